"""The fan-out through its public interface, against the private redis-server and fakeredis: what a
subscription is handed live is the log's own text, byte for byte, in order.

The pub/sub announcement carries each event without its positions, which the receiving pod puts
in (``codec.decode_announcement``); the append script writes the same text to the log. These
tests hold the two to each other. Gap repair, pub/sub loss and Redis restarts are exercised with
real pods in tests/e2e/test_streaming.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from broker import Content, EventLog, Fanout, Filter, LiveSubscription, LoggedEvent, NewEvent


class Collector:
    """A sink with unbounded room that records what it is handed."""

    def __init__(self) -> None:
        self.events: list[LoggedEvent] = []
        self.markers: list[tuple[str, int]] = []
        self.arrived = asyncio.Event()

    def send_event(
        self, sub: LiveSubscription, event: LoggedEvent, shared: dict[Any, Any] | None
    ) -> bool:
        self.events.append(event)
        self.arrived.set()
        return True

    def send_marker(self, sub: LiveSubscription, kind: Any, position: int) -> bool:
        self.markers.append((kind, position))
        self.arrived.set()
        return True

    async def wait_room(self) -> None:
        return None

    def send_reset(self, sub: LiveSubscription, reason: Any, epoch: str, head: int) -> None:
        self.markers.append(("reset", head))

    def send_truncated(self, sub: LiveSubscription, requested: int, earliest: int) -> None:
        self.markers.append(("truncated", earliest))

    async def until(self, count: int) -> list[LoggedEvent]:
        async with asyncio.timeout(10):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


@pytest.fixture
async def fanout(redis: aioredis.Redis, log: EventLog) -> AsyncIterator[Fanout]:
    fanout = Fanout(redis, log, poll_interval=60.0)  # no polling: only announcements deliver
    await fanout.start()
    try:
        yield fanout
    finally:
        await fanout.close()


EVENTS = [
    NewEvent("order.placed", {"orderId": "o-1", "total": 12.5}),
    NewEvent("order.paid", {"note": "Zoë paid 🎉", "nested": {"a": [1, 2, None]}}, {"by": "x"}),
    NewEvent("order.shipped", None, schema_version=3),
]


async def test_live_events_are_the_logs_text_byte_for_byte(
    fanout: Fanout, log: EventLog, store: str
) -> None:
    await log.append(store, "order-1", [NewEvent("order.created", {"n": 0})])  # version 1
    sink = Collector()
    await fanout.subscribe(store, Filter.parse("*"), sink, sub_id="s")
    await log.append(store, "order-1", EVENTS)  # streamPositions 1..3
    await log.append(store, "other-2", EVENTS[:1])  # a new stream: streamPosition 0
    live = await sink.until(4)
    stored = [e for page in [p async for p in log.scan(store, after=1)] for e in page.events]
    assert [(e.global_position, e.stream_id, e.type, e.json) for e in live] == [
        (e.global_position, e.stream_id, e.type, e.json) for e in stored
    ]
    assert [e.global_position for e in live] == [2, 3, 4, 5]
    first = live[0].json
    assert first.startswith('{"globalPosition":2,"streamPosition":1,"streamId":"order-1"')


async def test_a_filtered_subscription_gets_only_its_events_in_order(
    fanout: Fanout, log: EventLog, store: str
) -> None:
    sink = Collector()
    await fanout.subscribe(store, Filter.parse("order.pa*", "order-1"), sink, sub_id="s")
    for _ in range(3):
        await log.append(store, "order-1", EVENTS)
        await log.append(store, "order-2", EVENTS)
    got = await sink.until(3)
    await asyncio.sleep(0.05)  # nothing else arrives
    assert [(e.stream_id, e.type) for e in got] == [("order-1", "order.paid")] * 3
    assert [e.global_position for e in got] == [2, 8, 14]


class Refusing(Collector):
    """A sink that has no room for its next ``refusals`` live events (its subscription is then
    demoted, catches up from the log and goes live again)."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def send_event(
        self, sub: LiveSubscription, event: LoggedEvent, shared: dict[Any, Any] | None
    ) -> bool:
        if shared is not None and self.refusals:
            self.refusals -= 1
            return False
        return super().send_event(sub, event, shared)


async def test_content_conditions_hold_beside_plain_subscriptions_through_demotion(
    fanout: Fanout, log: EventLog, store: str
) -> None:
    """The fan-out makes content verdicts only while a live subscription of the feed has content
    conditions (``Feed.contents``): a content subscription that is demoted and comes back, or
    one that arrives after another left, still gets only what it matches."""
    paid = Filter.parse("*", None, Content.parse({"data": {"note": "Zoë paid 🎉"}}))
    plain, first = Collector(), Refusing(1)
    await fanout.subscribe(store, Filter.parse("*"), plain, sub_id="p")
    made = await fanout.subscribe(store, paid, first, sub_id="c")
    await log.append(store, "order-1", EVENTS)  # position 2 is the paid one: refused, demoted
    await log.append(store, "order-1", EVENTS)  # read from the log, then live again
    assert [e.global_position for e in await first.until(2)] == [2, 5]
    assert fanout.stats.demoted == 1
    await made.sub.close()
    later = Collector()
    await fanout.subscribe(store, paid, later, sub_id="c2")
    await log.append(store, "order-1", EVENTS)
    assert [e.global_position for e in await later.until(1)] == [8]
    assert len(await plain.until(9)) == 9
    await asyncio.sleep(0.05)  # nothing else arrives
    assert [e.global_position for e in first.events] == [2, 5]
    assert [e.global_position for e in later.events] == [8]
    assert [e.global_position for e in plain.events] == list(range(1, 10))


async def test_a_cursor_a_stale_shared_head_read_does_not_hold_is_not_ahead(
    fanout: Fanout, log: EventLog, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Subscribes arriving together share one head read; one that arrives with a cursor an
    append made valid after that read started must not be told its position is ahead
    (docs/streaming.md, "Resets"). The shared read is held back here until the append is done."""
    await log.append(store, "s", [NewEvent("t", {})])
    await fanout.subscribe(store, Filter.parse("*"), Collector(), sub_id="warm")  # the feed
    real = log.head_and_epoch
    release = asyncio.Event()
    calls = 0

    async def stale_first(name: str) -> tuple[int, str]:
        nonlocal calls
        calls += 1
        value = await real(name)
        if calls == 1:
            await release.wait()  # returns the head as it was before the append below
        return value

    monkeypatch.setattr(log, "head_and_epoch", stale_first)
    early = asyncio.create_task(
        fanout.subscribe(store, Filter.parse("*"), Collector(), sub_id="early")
    )
    await asyncio.sleep(0.05)  # its head read (1) is in flight
    await log.append(store, "s", [NewEvent("t", {})])  # position 2: the client saw it elsewhere
    late = asyncio.create_task(
        fanout.subscribe(store, Filter.parse("*"), Collector(), sub_id="late", position=2)
    )
    await asyncio.sleep(0.05)
    release.set()
    assert (await early).reset is None
    made = await late
    assert made.reset is None and made.head == 2
    ahead = await fanout.subscribe(store, Filter.parse("*"), Collector(), sub_id="x", position=3)
    assert ahead.reset == "position-ahead"


async def test_a_stores_distinct_complex_patterns_on_a_pod_are_bounded(
    fanout: Fanout, log: EventLog, store: str
) -> None:
    """Each distinct complex pattern (``a*b``, several ``*``) costs a match per event type, so
    a store's subscriptions on a pod hold at most ``MAX_COMPLEX_PATTERNS`` of them: one more is
    refused (LIMIT_EXCEEDED); shared patterns, ``prefix.*`` and ``*.suffix`` do not count, and
    closing a subscription gives its patterns back."""
    from broker import TooManyPatterns
    from broker.fanout import MAX_COMPLEX_PATTERNS

    await log.append(store, "s-0", [NewEvent("x.1.y", {})])
    sink = Collector()
    per = 32  # patterns per filter (the most a filter takes)
    subs = []
    for k in range(MAX_COMPLEX_PATTERNS // per):
        patterns = [f"t{k}.{j}.*.x*" for j in range(per)]
        made = await fanout.subscribe(store, Filter.parse(patterns), sink, sub_id=f"s{k}")
        subs.append(made.sub)
    shared = await fanout.subscribe(
        store, Filter.parse(["t0.0.*.x*", "a.*", "*.b"]), sink, sub_id="x"
    )
    refused = 0
    for flt in (Filter.parse("new.*.one*"), Filter.parse(["t0.0.*.x*", "new.*.one*"])):
        try:
            await fanout.subscribe(store, flt, sink, sub_id="over")
        except TooManyPatterns as exc:
            assert exc.code == "LIMIT_EXCEEDED"
            refused += 1
    assert refused == 2
    await subs[0].close()
    await shared.sub.close()  # (t0.0.*.x* was held twice: it is free only now)
    made = await fanout.subscribe(store, Filter.parse("new.*.one*"), sink, sub_id="fits")
    await log.append(store, "s-1", [NewEvent("new.x.one.y", {}), NewEvent("t1.3.a.xz", {})])
    got = await sink.until(2)
    assert [e.type for e in got] == ["new.x.one.y", "t1.3.a.xz"]
    await made.sub.close()


class Stalling(Collector):
    """A sink that takes its first ``room`` replayed events, then none until ``room`` grows."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def send_event(
        self, sub: LiveSubscription, event: LoggedEvent, shared: dict[Any, Any] | None
    ) -> bool:
        if len(self.events) >= self.room:
            return False
        return super().send_event(sub, event, shared)


async def test_a_replay_held_back_by_the_budget_sends_no_checkpoint_of_what_it_sent(
    fanout: Fanout, log: EventLog, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay whose sink is refused under the pod's budget pressure lets its page go and
    reads it again later; while it waits, a checkpoint would tell the client only a position
    it already has (its last event's), so none is sent. Once the sink has room, the rest comes."""
    from broker import fanout as fanout_module

    monkeypatch.setattr(fanout_module, "REPLAY_CHECKPOINT_INTERVAL", 0.02)
    monkeypatch.setattr(fanout_module, "OVER_BUDGET_RECHECK", 0.01)
    monkeypatch.setattr(type(fanout.budget), "pressure", property(lambda self: True))
    await log.append(store, "order-1", EVENTS)  # positions 1..3, every one matching
    sink = Stalling(room=2)
    await fanout.subscribe(store, Filter.parse("order.*"), sink, sub_id="s", position="earliest")
    await sink.until(2)
    await asyncio.sleep(0.3)  # the third is refused again and again, checkpoints due meanwhile
    assert sink.markers == []
    sink.room = 3
    assert [e.global_position for e in await sink.until(3)] == [1, 2, 3]


async def test_closing_the_fanout_ends_a_subscription_that_is_catching_up(
    fanout: Fanout, log: EventLog, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Fanout.close`` owns every subscription's task, not only the live ones': a catch-up left
    running retried against the closed connection every half second, for ever."""
    from broker import fanout as fanout_module

    monkeypatch.setattr(fanout_module, "OVER_BUDGET_RECHECK", 0.01)
    monkeypatch.setattr(type(fanout.budget), "pressure", property(lambda self: True))
    await log.append(store, "order-1", EVENTS)
    made = await fanout.subscribe(
        store, Filter.parse("*"), Stalling(room=0), sub_id="s", position="earliest"
    )
    await asyncio.sleep(0.05)
    assert made.sub.state == "catching-up"
    await fanout.close()
    assert made.sub.state == "closed"
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("catch-up")]
