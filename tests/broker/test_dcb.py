"""DCB (dynamic consistency boundary) appends and queries, against the private redis-server and
fakeredis (and the archive where the boundary crosses into it): the condition is checked and the
events appended in one atomic step, in proportion to what could match, across the archive too."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
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
from broker import log as log_module
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


# -- bounded work per script call ----------------------------------------------------------------

HITS = [1, 999, 1001, 1999, 2001, 2999]
"""Where the "scattered" item matches in the ``long_walks`` store: around where a walk of the "t"
list runs out of one call's budget (its 1000th candidate is position 1999)."""
SCATTERED = {"types": ["t"], "tags": ["a", "b"]}
NOTHING = {"types": ["t"], "tags": ["c"]}
"""Walks 1500 candidates and matches none (a black-box probe sent 8 such items on 100,000
events: one call walked them all and blocked every tenant's Redis for 4.5 s)."""


@pytest.fixture
async def long_walks(log: EventLog, store: str) -> str:
    """3,000 events tagged "a": odd positions of type "t", even ones of type "u" and tagged "b" and
    "c"; the HITS, of type "t", tagged "b" too."""
    for start in range(1, 3001, 500):
        batch = []
        for i in range(start, start + 500):
            tags = ("a", "b", "c") if i % 2 == 0 else ("a", "b") if i in HITS else ("a",)
            batch.append(ev("t" if i % 2 else "u", *tags))
        await log.append_dcb(store, batch)
    return store


class Calls:
    """Counts the DCB script calls of ``log`` (queries and the append's pre-check, and the append's
    own) and, on a real redis-server, the XRANGEs they made (each candidate checked against its
    log entry is one)."""

    def __init__(self, redis: aioredis.Redis, log: EventLog, monkeypatch: pytest.MonkeyPatch):
        self.redis, self.queries, self.appends = redis, 0, 0
        query, run = log._dcb_query, log._run

        def counted_query(**kwargs: Any) -> Any:
            self.queries += 1
            return query(**kwargs)

        async def counted_run(script: Any, keys: list[str], args: list[Any]) -> Any:
            self.appends += script is log._append_dcb
            return await run(script, keys, args)

        monkeypatch.setattr(log, "_dcb_query", counted_query)
        monkeypatch.setattr(log, "_run", counted_run)

    async def xranges(self) -> int | None:
        if isinstance(self.redis, fakeredis.FakeAsyncRedis):
            return None
        stats = await self.redis.info("commandstats")
        return int(stats.get("cmdstat_xrange", {}).get("calls", 0))


@pytest.fixture
def calls(redis: aioredis.Redis, log: EventLog, monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(redis, log, monkeypatch)


async def test_a_query_that_matches_nothing_takes_bounded_calls(
    log: EventLog, long_walks: str, calls: Calls
) -> None:
    """Eight items walking 1,500 candidates each: several calls, none examining more than
    DCB_BUDGET candidates (plus one per item), and the same answer as one walk gave."""
    before = await calls.xranges()
    events, last = await log.dcb_query(long_walks, q(*[NOTHING] * 8), after=5)
    assert (events, last) == ([], 5)
    assert calls.queries > 8  # 8 x 1500 candidates, 1000 a call
    if before is not None:
        xranges = (await calls.xranges() or 0) - before
        assert 8 * 1498 <= xranges <= calls.queries * (log_module.DCB_BUDGET + 8)


async def test_an_item_whose_type_lists_are_empty_costs_nothing(
    log: EventLog, long_walks: str, calls: Calls
) -> None:
    """The probe's own query: types no event has, with a tag every event has. The type lists are
    the shorter walk: nothing to read, where every tagged event was checked, once per item."""
    before = await calls.xranges()
    probe = [{"types": [f"none{i}"], "tags": ["a"]} for i in range(8)]
    assert await log.dcb_query(long_walks, q(*probe)) == ([], 0)
    with pytest.raises(ConditionFailed):  # the item with a real type still matches
        await log.append_dcb(long_walks, [ev("x")], condition=q(*probe, {"types": ["u"]}))
    assert await log.append_dcb(long_walks, [ev("x")], condition=q(*probe), after=2)
    assert calls.queries == 1 and calls.appends == 2
    if before is not None:
        assert (await calls.xranges() or 0) - before == 0


async def test_matches_across_call_boundaries_are_all_found_in_order(
    log: EventLog, long_walks: str, calls: Calls
) -> None:
    events, last = await log.dcb_query(long_walks, q(SCATTERED))
    assert [e.global_position for e in events] == HITS and last == HITS[-1]
    events, last = await log.dcb_query(long_walks, q(SCATTERED), after=1, limit=3)
    assert [e.global_position for e in events] == [999, 1001, 1999] and last == 1999
    events, last = await log.dcb_query(long_walks, q(SCATTERED, NOTHING), after=1999, limit=2)
    assert [e.global_position for e in events] == [2001, 2999] and last == 2999
    events, _ = await log.dcb_query(long_walks, q({"tags": ["a"]}, NOTHING), after=10, limit=1000)
    assert [e.global_position for e in events] == list(range(11, 1011))
    for after, expected in [(0, HITS), (1000, HITS[2:]), (2001, [2999])]:
        with pytest.raises(ConditionFailed) as failed:
            await log.append_dcb(long_walks, [ev("x")], condition=q(SCATTERED), after=after)
        assert (failed.value.positions, failed.value.after) == (expected, after)
    with pytest.raises(ConditionFailed) as failed:  # the first MAX_CONFLICTS are named
        await log.append_dcb(long_walks, [ev("x")], condition=q(NOTHING, {"types": ["u"]}))
    assert failed.value.positions == list(range(2, 202, 2))
    assert calls.queries > 5
    assert await log.head(long_walks) == 3000


async def test_a_condition_that_matches_nothing_is_checked_in_bounded_calls(
    log: EventLog, long_walks: str, calls: Calls
) -> None:
    """The range is checked before the atomic step in bounded calls; the step checks what came
    after, within one call's budget too."""
    before = await calls.xranges()
    result = await log.append_dcb(long_walks, [ev("t", "c")], condition=q(*[NOTHING] * 4))
    assert result.first_position == 3001
    assert calls.appends == 2  # the step alone could not decide; then it could
    assert calls.queries > 4
    if before is not None:
        xranges = (await calls.xranges() or 0) - before
        assert xranges <= (calls.queries + calls.appends) * (log_module.DCB_BUDGET + 4)


async def test_an_event_appended_between_the_check_and_the_step_fails_the_append(
    log: EventLog, long_walks: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    precheck = log._precheck

    async def racing(*args: Any) -> Any:
        done = await precheck(*args)
        await log.append(long_walks, "other", [ev("t", "c")])  # matches NOTHING's condition
        return done

    monkeypatch.setattr(log, "_precheck", racing)
    with pytest.raises(ConditionFailed) as failed:
        await log.append_dcb(long_walks, [ev("x")], condition=q(NOTHING), after=3)
    assert (failed.value.positions, failed.value.after) == ([3001], 3)
    assert await log.head(long_walks) == 3001


@pytest.mark.parametrize("last_matches", [False, True])
async def test_appends_racing_in_beyond_a_calls_budget_are_checked_before_the_step(
    log: EventLog, store: str, monkeypatch: pytest.MonkeyPatch, calls: Calls, last_matches: bool
) -> None:
    """More candidates raced in after the pre-check than the atomic step may examine: it appends
    nothing and says how far it got; the pre-check goes on from there and the step is asked
    again."""
    monkeypatch.setattr(log_module, "DCB_BUDGET", 5)
    await log.append_dcb(store, [ev("t", "k" if i % 2 else "m") for i in range(12)])
    precheck, rounds, appends = log._precheck, 0, calls.appends

    async def racing(*args: Any) -> Any:
        nonlocal rounds
        rounds += 1
        done = await precheck(*args)
        if rounds == 1:
            raced = [ev("t", "k" if i % 2 else "m") for i in range(19)]
            await log.append_dcb(store, [*raced, ev("t", "k", "m") if last_matches else ev("t")])
        return done

    monkeypatch.setattr(log, "_precheck", racing)
    condition = q({"tags": ["k", "m"]})
    if last_matches:
        with pytest.raises(ConditionFailed) as failed:
            await log.append_dcb(store, [ev("x")], condition=condition)
        assert failed.value.positions == [32]
    else:
        assert (await log.append_dcb(store, [ev("x")], condition=condition)).first_position == 33
    assert rounds == 2 and calls.appends - appends == 3 + 1  # (+ the raced append)


@pytest.mark.parametrize("budget", [1, 2, 3, 7])
async def test_bounded_calls_answer_as_one_walk_would(
    log: EventLog, store: str, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Random events and queries, with budgets that put call boundaries everywhere: every query
    and condition answers what a check of every event gives."""
    rng = random.Random(budget)
    written: list[tuple[str, tuple[str, ...]]] = []
    for _ in range(6):
        batch = [(rng.choice(TYPES), tuple(rng.sample(TAGS, rng.randint(0, 3)))) for _ in range(15)]
        await log.append_dcb(store, [ev(kind, *tags) for kind, tags in batch])
        written += batch
    monkeypatch.setattr(log_module, "DCB_BUDGET", budget)
    monkeypatch.setattr(log_module, "MAX_CONFLICTS", 4)
    for _ in range(25):
        raw = [
            {"types": rng.sample(TYPES, rng.randint(1, 2))} if rng.random() < 0.3 else {}
            for _ in range(rng.randint(1, 3))
        ]
        for item in raw:
            if not item or rng.random() < 0.7:
                item["tags"] = rng.sample(TAGS, rng.randint(1, 2))
        query = Query.parse({"items": raw})
        after, limit = rng.randint(0, 80), rng.randint(1, 12)
        expected = [
            p
            for p, (kind, tags) in enumerate(written, 1)
            if p > after and query.accepts(kind, tags)
        ]
        events, last = await log.dcb_query(store, query, after=after, limit=limit)
        assert [e.global_position for e in events] == expected[:limit], raw
        assert last == (expected[:limit][-1] if expected else after)
        if expected:
            with pytest.raises(ConditionFailed) as failed:
                await log.append_dcb(store, [ev("x")], condition=query, after=after)
            assert failed.value.positions == expected[:4], raw
    assert await log.head(store) == len(written)


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
