"""DCB (dynamic consistency boundary) appends and queries, against the private redis-server and
fakeredis (and the archive where the boundary crosses into it): the condition is checked and the
events appended in one atomic step, in proportion to what could match, across the archive too."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import (
    DCB_STREAM,
    Archive,
    ConditionFailed,
    EventLog,
    InvalidEvent,
    Lifecycle,
    LifecycleOptions,
    NewEvent,
    Query,
    StoreAdmin,
    codec,
)
from broker.keys import StoreKeys


def q(*items: dict[str, Any]) -> Query:
    return Query.parse({"items": list(items)})


def ev(kind: str, *tags: str) -> NewEvent:
    return NewEvent(kind, {"kind": kind}, tags=tags)


async def test_appends_without_a_condition_go_to_the_dcb_stream_with_their_tags(
    log: EventLog, store: str
) -> None:
    result = await log.append_dcb(store, [ev("user.registered", "user:1", "email:a@x")])
    assert (result.first_position, result.last_position, result.stream_id) == (1, 1, DCB_STREAM)
    stored = codec.event_of(result.events[0].json)
    assert stored["tags"] == ["user:1", "email:a@x"] and stored["streamId"] == DCB_STREAM
    assert codec.event_of((await log.after(store, 0, 10)).events[0].json) == stored
    second = await log.append_dcb(store, [ev("user.renamed", "user:1")])
    assert second.stream_version == 2 and second.events[0].global_position == 2


async def test_an_idempotency_key_repeats_the_first_outcome(log: EventLog, store: str) -> None:
    """A DCB append repeated with its idempotency key writes nothing and gets the first outcome
    back: the same result, or the same condition failure even once nothing would match; a key
    used by another kind of append is refused."""
    name = q({"types": ["user.registered"], "tags": ["username:alice"]})
    first = await log.append_dcb(
        store, [ev("user.registered", "username:alice")], condition=name, idempotency_key="k1"
    )
    again = await log.append_dcb(
        store, [ev("user.registered", "username:alice")], condition=name, idempotency_key="k1"
    )
    assert again.replayed and not first.replayed
    assert (again.first_position, again.last_position, again.transaction_id) == (
        first.first_position,
        first.last_position,
        first.transaction_id,
    )
    assert again.stream_version == first.stream_version == 1
    assert [e.json for e in again.events] == [e.json for e in first.events]
    assert await log.head(store) == 1

    with pytest.raises(ConditionFailed) as failed:
        await log.append_dcb(store, [ev("user.registered")], condition=name, idempotency_key="k2")
    assert (failed.value.positions, failed.value.after) == ([1], 0)
    # Even with a condition that would pass now, the key answers what it answered first.
    with pytest.raises(ConditionFailed) as failed:
        await log.append_dcb(store, [ev("x.y")], idempotency_key="k2")
    assert (failed.value.positions, failed.value.after) == ([1], 0)
    assert await log.head(store) == 1

    await log.append(store, "s-1", [ev("order.placed")], idempotency_key="stream-key")
    with pytest.raises(InvalidEvent):
        await log.append_dcb(store, [ev("x.y")], idempotency_key="stream-key")
    assert await log.head(store) == 2


async def test_a_condition_fails_exactly_when_a_matching_event_follows_after(
    log: EventLog, store: str
) -> None:
    await log.append_dcb(store, [ev("user.registered", "user:1", "email:a@x")])  # 1
    await log.append(store, "s", [ev("order.placed", "user:1")])  # 2: a stream append, tagged
    await log.append_dcb(store, [ev("user.registered", "user:2", "email:b@x")])  # 3
    email_a = q({"types": ["user.registered"], "tags": ["email:a@x"]})
    with pytest.raises(ConditionFailed) as failed:
        await log.append_dcb(store, [ev("user.registered", "email:a@x")], condition=email_a)
    assert (failed.value.positions, failed.value.after) == ([1], 0)  # (none given: from the start)
    # After position 1 nothing matches: the same condition lets the append through.
    ok = await log.append_dcb(store, [ev("x.y")], condition=email_a, after=1)
    assert ok.first_position == 4
    # Tags AND within an item, types OR, items OR; stream appends count too.
    both = q({"tags": ["user:1", "email:a@x"]})
    with pytest.raises(ConditionFailed) as failed:
        await log.append_dcb(store, [ev("x.y")], condition=both)
    assert failed.value.positions == [1]
    either = q({"types": ["order.placed", "nothing"]}, {"tags": ["user:2"]})
    with pytest.raises(ConditionFailed) as failed:
        await log.append_dcb(store, [ev("x.y")], condition=either)
    assert failed.value.positions == [2, 3]
    assert (await log.head(store)) == 4  # nothing was written by the refused appends


async def test_queries_by_types_and_tags_with_after_and_limit(log: EventLog, store: str) -> None:
    for i in range(30):
        await log.append_dcb(store, [ev(f"t{i % 3}", f"k{i % 5}", "all")])
    events, last = await log.dcb_query(store, q({"types": ["t1"], "tags": ["k2"]}))
    positions = [e.global_position for e in events]
    assert positions == [i + 1 for i in range(30) if i % 3 == 1 and i % 5 == 2]
    assert last == positions[-1]
    events, last = await log.dcb_query(store, q({"tags": ["all"]}), after=10, limit=5)
    assert [e.global_position for e in events] == [11, 12, 13, 14, 15] and last == 15
    events, last = await log.dcb_query(store, q({"types": ["none"]}), after=7)
    assert events == [] and last == 7


async def test_trimming_keeps_the_indexes_in_step_with_the_log(
    redis: aioredis.Redis, log: EventLog, stores: StoreAdmin
) -> None:
    await stores.create("shop", settings={"hotRetention": {"maxEvents": 5}})
    for i in range(20):
        await log.append_dcb("shop", [ev("a" if i % 2 else "b", "k")])
    lifecycle = Lifecycle(redis, log, None, LifecycleOptions())
    while await lifecycle.run_once():
        pass
    k = StoreKeys("shop")
    assert [int(p) for p in await redis.lrange(k.tag_prefix + "k", 0, -1)] == list(range(16, 21))
    assert [int(p) for p in await redis.lrange(k.type_prefix + "a", 0, -1)] == [16, 18, 20]
    events, _ = await log.dcb_query("shop", q({"tags": ["k"]}))
    assert [e.global_position for e in events] == list(range(16, 21))
    await stores.delete("shop")
    assert not await redis.exists(k.tag_prefix + "k", k.type_prefix + "a", k.type_prefix)


@pytest.fixture
async def archived(redis: aioredis.Redis, archive_url: str) -> AsyncIterator[EventLog]:
    archive = Archive(archive_url)
    log = EventLog(redis, archive=archive)
    await StoreAdmin(redis, archive).create("shop", settings={"hotRetention": {"maxEvents": 3}})
    for i in range(12):
        await log.append_dcb("shop", [ev(f"t{i % 2}", f"user:{i}")])
    lifecycle = Lifecycle(redis, log, archive, LifecycleOptions())
    while await lifecycle.run_once():
        pass
    assert int(await redis.hget(StoreKeys("shop").meta, "low")) == 10
    try:
        yield log
    finally:
        await archive.close()


async def test_conditions_and_queries_cross_into_the_archive(archived: EventLog) -> None:
    with pytest.raises(ConditionFailed) as failed:
        await archived.append_dcb("shop", [ev("x")], condition=q({"tags": ["user:2"]}))
    assert failed.value.positions == [3]  # archived, no longer in Redis
    await archived.append_dcb("shop", [ev("x")], condition=q({"tags": ["user:2"]}), after=3)
    events, last = await archived.dcb_query("shop", q({"types": ["t1"]}))
    assert [e.global_position for e in events] == [2, 4, 6, 8, 10, 12] and last == 12
    events, last = await archived.dcb_query("shop", q({"types": ["t0"]}), limit=4)
    assert [e.global_position for e in events] == [1, 3, 5, 7] and last == 7


async def test_a_boundary_that_moves_under_the_check_is_checked_again(
    archived: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive was checked up to Redis's low at that moment; if retention moves low past it
    before the atomic step, the step refuses (retry) instead of missing what moved."""
    real = archived.bounds
    calls = 0

    async def stale(store: str) -> Any:
        nonlocal calls
        calls += 1
        bounds = await real(store)
        if calls == 1:
            return type(bounds)(bounds.uid, 5, bounds.oldest)  # as it was before trimming
        return bounds

    monkeypatch.setattr(archived, "bounds", stale)
    with pytest.raises(ConditionFailed) as failed:
        await archived.append_dcb("shop", [ev("x")], condition=q({"tags": ["user:7"]}))
    assert failed.value.positions == [8] and calls >= 2


# -- the rule, under concurrent appenders -------------------------------------------------------

EXAMPLES = itertools.count()
TYPES = ["a", "b", "c"]
TAGS = ["x", "y", "z"]
items = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "types": st.lists(st.sampled_from(TYPES), min_size=1, max_size=2),
            "tags": st.lists(st.sampled_from(TAGS), min_size=1, max_size=2),
        },
    ).filter(bool),
    min_size=1,
    max_size=2,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(conditions=st.lists(items, min_size=6, max_size=6), seed=st.integers(0, 2**16))
async def test_an_append_succeeds_exactly_when_nothing_after_after_matches(
    log: EventLog, stores: StoreAdmin, conditions: list[list[dict[str, Any]]], seed: int
) -> None:
    """Six appenders race, each: query its condition, then append conditioned on what it read.
    Afterwards every success must have had no match between its `after` and its own position
    (no lost conflict), and every failure must name real matches after its `after` (no false
    one)."""
    store = f"race-{next(EXAMPLES)}"  # hypothesis runs every example on the same fixtures
    await stores.create(store)
    rng = random.Random(seed)
    outcomes: list[tuple[Query, int, Any]] = []

    async def appender(raw: list[dict[str, Any]]) -> None:
        condition = Query.parse({"items": raw})
        for _ in range(4):
            _, after = await log.dcb_query(store, condition)
            await asyncio.sleep(rng.random() / 200)
            event = NewEvent(rng.choice(TYPES), {}, tags=tuple(rng.sample(TAGS, rng.randint(0, 2))))
            try:
                result = await log.append_dcb(store, [event], condition=condition, after=after)
                outcomes.append((condition, after, result.first_position))
            except ConditionFailed as exc:
                outcomes.append((condition, after, exc))

    await asyncio.gather(*(appender(c) for c in conditions))
    entries = {
        e.global_position: codec.event_of(e.json)
        for e in (await log.after(store, 0, 10_000)).events
    }

    def matches(condition: Query, position: int) -> bool:
        e = entries[position]
        return condition.accepts(e["type"], e.get("tags") or ())

    for condition, after, outcome in outcomes:
        if isinstance(outcome, ConditionFailed):
            assert outcome.positions and all(p > after for p in outcome.positions)
            assert all(matches(condition, p) for p in outcome.positions), "a false conflict"
        else:
            missed = [p for p in range(after + 1, outcome) if matches(condition, p)]
            assert not missed, f"a lost conflict: {missed} after {after} before {outcome}"
