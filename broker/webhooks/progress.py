"""Webhook subscriptions as the dispatcher sees them: which exist, what changed, where each one
resumes, and the writes that record delivery outcomes (progress, failed attempts, dead letters).
Every write is fenced by the subscription's lease and its store's history (``scripts/wh_progress``,
``wh_fail``, ``wh_dead``, ``lib/fence.lua``): a replica that lost the lease gets ``lost`` and can
never move the progress, nor can a delivery of a store's old history once the store was created
again (``recreated``).

Progress saves of all the replica's subscriptions share round trips: a save goes at once when
none is on its way; those asked for meanwhile go together in the next pipeline (``_flush``). A
round trip costs this host's dispatcher ~200 us of CPU, most of it the kernel's; sharing them is
what keeps the per-stream hold of ``window.Window`` cheap with many subscriptions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from .. import codec
from ..aio import cancel_and_wait
from ..errors import Unavailable
from ..keys import STORE_REGISTRY, WebhookKeys, valid_store_name
from ..redis import call, load_script, run_script, run_scripts
from ..types import now_iso
from .records import DeliveryState, WebhookSubscription

KEYS_KEPT = 10_000
"""Subscriptions whose save keys are kept at once (beyond: made again)."""


class ProgressStore:
    """The dispatcher's reads and lease-fenced writes of subscription records."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._progress = load_script(redis, "wh_progress", "fence")
        self._fail = load_script(redis, "wh_fail", "fence")
        self._dead = load_script(redis, "wh_dead", "fence")
        self._rewind = load_script(redis, "wh_rewind")
        self._saves: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        """Progress saves waiting for the next round trip (at most one per worker)."""
        self._flusher: asyncio.Task[None] | None = None
        self._busy = False
        """A round trip of saves is on its way (a save by itself, or ``_flush``'s)."""
        self._progress_keys: dict[tuple[str, str], list[str]] = {}
        """Per subscription, the keys of its saves, made once (a store name's check and six
        strings per save were ~1.5% of a dispatcher's CPU, py-spy)."""

    async def close(self) -> None:
        """Stop sending saves (after the workers stopped: none is waiting then)."""
        if self._flusher is not None:
            await cancel_and_wait([self._flusher])

    async def all_refs(self) -> list[tuple[str, str]]:
        """(store, id) of every subscription of every store."""
        stores = sorted(await call(self._redis.smembers(STORE_REGISTRY)))
        stores = [s for s in stores if valid_store_name(s)]
        if not stores:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for store in stores:
                k = WebhookKeys(store)
                pipe.exists(k.meta)
                pipe.zrange(k.index, 0, -1)
            replies = await call(pipe.execute())
        refs: list[tuple[str, str]] = []
        for i, store in enumerate(stores):
            exists, ids = replies[2 * i : 2 * i + 2]
            if exists:  # (a deleted store's subscriptions wait, inert, for a store of its name)
                refs.extend((store, sub_id) for sub_id in ids)
        return refs

    async def revisions(self, refs: Sequence[tuple[str, str]]) -> list[int | None]:
        """Each subscription's ``rev`` (None: deleted)."""
        if not refs:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for store, sub_id in refs:
                pipe.hget(WebhookKeys(store).record(sub_id), "rev")
            replies = await call(pipe.execute())
        return [None if r is None else int(r) for r in replies]

    async def heads(self, stores: Sequence[str]) -> dict[str, int]:
        """Each store's head position (missing stores left out)."""
        if not stores:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for store in stores:
                pipe.hget(WebhookKeys(store).meta, "head")
            replies = await call(pipe.execute())
        return {s: int(h) for s, h in zip(stores, replies, strict=True) if h is not None}

    async def load(
        self, store: str, sub_id: str
    ) -> tuple[WebhookSubscription, DeliveryState] | None:
        """A subscription with the state a dispatcher resumes from; None if it is gone."""
        k = WebhookKeys(store)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.record(sub_id))
            pipe.hgetall(k.attempts(sub_id))
            pipe.zrange(k.done(sub_id), 0, -1)
            pipe.zcard(k.redrive(sub_id))
            pipe.hget(k.meta, "uid")
            record, attempts, done, redrive, uid = await call(pipe.execute())
        if not record or "config" not in record:
            return None
        sub = WebhookSubscription.from_record(store, record, store_id=uid or "")
        counts: dict[str, int] = {}
        for event_id, value in attempts.items():
            position, _, failed = value.partition("|")
            if int(position) > sub.position:
                counts[event_id] = int(failed)
        done_after = {int(p) for p in done if int(p) > sub.position}
        return sub, DeliveryState(counts, done_after, int(redrive))

    async def check_history(self, store: str, sub_id: str, token: str) -> tuple[str, str]:
        """Is the progress a position of the store's history as it is now? Checked against the
        head and epoch read in the same atomic step, fenced by the lease (``wh_rewind``):
        (``ok``, "") | (``paused``, statusDetails JSON) | (``lost``, "") | (``gone``, "")."""
        k = WebhookKeys(store)
        reply = await call(
            self._rewind(
                keys=[k.record(sub_id), k.lease(sub_id), k.meta, k.owner], args=[token, now_iso()]
            )
        )
        return str(reply[0]), str(reply[2]) if len(reply) > 2 else ""

    async def next_redrive(self, store: str, sub_id: str) -> tuple[str, int, str] | None:
        """The oldest dead letter queued for redelivery: (eventId, globalPosition, record)."""
        k = WebhookKeys(store)
        head = await call(self._redis.zrange(k.redrive(sub_id), 0, 0, withscores=True))
        if not head:
            return None
        event_id, score = head[0]
        record = await call(self._redis.hget(k.letters(sub_id), event_id))
        return event_id, int(score), record or ""

    async def progress(
        self,
        store: str,
        sub_id: str,
        token: str,
        *,
        position: int,
        succeeded: bool,
        done: Sequence[int] = (),
        finished: Sequence[str] = (),
        redriven: Sequence[str] = (),
        started: bool = False,
    ) -> str:
        """Save progress, fenced by the lease and the store's history: ``ok``, ``lost``,
        ``gone`` or ``recreated`` (the store was created again since the record's epoch).
        ``started``: an event created at or after the record's ``startTime`` was read (the
        record drops it; ``position`` is at least the one before that event)."""
        args: list[Any] = [token, position, "1" if succeeded else "0", now_iso()]
        for values in (done, finished, redriven):
            args.append(len(values))
            args.extend(values)
        args.append("1" if started else "0")
        keys = self._progress_keys.get((store, sub_id))
        if keys is None:
            if len(self._progress_keys) >= KEYS_KEPT:
                self._progress_keys.clear()
            k = WebhookKeys(store)
            keys = self._progress_keys[store, sub_id] = [
                k.record(sub_id),
                k.lease(sub_id),
                k.attempts(sub_id),
                k.done(sub_id),
                k.redrive(sub_id),
                k.letters(sub_id),
                k.meta,
            ]
        if not self._busy:  # none on its way: this one goes at once, by itself
            self._busy = True
            try:
                return str(await call(run_script(self._redis, self._progress, keys, args)))
            finally:
                self._busy = False
                self._start_flush()
        saved = asyncio.get_running_loop().create_future()
        self._saves.append((keys, args, saved))
        self._start_flush()
        return str(await saved)

    def _start_flush(self) -> None:
        if self._saves and self._flusher is None and not self._busy:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="webhook progress saves"
            )

    async def _flush(self) -> None:
        """Send the saves that waited for one on its way, one pipeline per round trip, until none
        waits. A caller that was cancelled meanwhile is not answered; its save, fenced like any,
        is still made (what it records happened)."""
        batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._busy = True
        try:
            while self._saves:
                batch, self._saves = self._saves, []
                try:
                    results = await self._send(batch)
                except Exception as exc:  # Redis unavailable: every caller of the batch is told
                    results = [exc] * len(batch)
                for (_, _, saved), result in zip(batch, results, strict=True):
                    if saved.done():
                        continue
                    if isinstance(result, Exception):
                        saved.set_exception(result)
                    else:
                        saved.set_result(result)
                batch = []
        finally:
            self._flusher = None
            self._busy = False
            for _, _, saved in batch + self._saves:  # (cancelled: close)
                if not saved.done():
                    saved.set_exception(Unavailable("the dispatcher is closing"))
            self._saves = []

    async def _send(self, batch: list[tuple[list[str], list[Any], Any]]) -> list[Any]:
        """Run the saves' script, each save's reply or error (``run_scripts``)."""
        return await run_scripts(self._redis, self._progress, [(k, a) for k, a, _ in batch])

    async def failed(
        self,
        store: str,
        sub_id: str,
        token: str,
        *,
        event_id: str,
        position: int | None,
        attempts: int,
        error: str,
        auto_pause_ms: int,
    ) -> str:
        """Record a failed attempt (``position`` None: a redrive, whose count is not kept):
        ``ok``, ``paused`` (auto-paused now), ``lost``, ``gone`` or ``recreated``."""
        k = WebhookKeys(store)
        now_ms = int(time.time() * 1000)
        reason = f"endpoint failing for {auto_pause_ms / 1000:g} s; last error: {error}"
        return str(
            await call(
                self._fail(
                    keys=[k.record(sub_id), k.lease(sub_id), k.attempts(sub_id), k.meta],
                    args=[
                        token,
                        event_id,
                        "" if position is None else f"{position}|{attempts}",
                        error,
                        now_iso(),
                        now_ms,
                        auto_pause_ms,
                        reason,
                    ],
                )
            )
        )

    async def dead_letter(
        self,
        store: str,
        sub_id: str,
        token: str,
        *,
        event_id: str,
        position: int,
        stream_id: str,
        event_json: str,
        attempts: int,
        error: str,
        limit: int,
    ) -> tuple[str, int]:
        """Move an event to the dead-letter list: (``ok``/``lost``/``gone``/``recreated``,
        dropped)."""
        k = WebhookKeys(store)
        record = codec.json_object(
            {
                "eventId": event_id,
                "globalPosition": position,
                "streamId": stream_id,
                "attempts": attempts,
                "lastError": error,
                "failedAt": now_iso(),
            },
            event=event_json,
        )
        status, dropped = await call(
            self._dead(
                keys=[
                    k.record(sub_id),
                    k.lease(sub_id),
                    k.attempts(sub_id),
                    k.dead(sub_id),
                    k.redrive(sub_id),
                    k.letters(sub_id),
                    k.meta,
                ],
                args=[token, event_id, position, record, limit],
            )
        )
        return str(status), int(dropped)
