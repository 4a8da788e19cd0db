"""The webhook dispatcher: which replica delivers which subscription, and the doorbell that tells
its workers about new events. Design and guarantees: ``docs/webhooks.md``.

Replicas share the subscriptions through **leases**: a subscription is delivered by the one
replica holding ``dg:{store}:wh:<id>:lease`` (``SET NX PX``, renewed every third of its TTL).
Every write that records an outcome is fenced by that lease (``progress``), so a replica that lost
it stops that subscription and can never move its progress. A replica takes at most its fair share
(``ceil(subscriptions / live replicas)``; membership is the ``WEBHOOK_DISPATCHERS`` zset of
heartbeats), releases the excess when replicas join, and picks up a dead replica's subscriptions
once their leases expire. Each owned subscription is one ``worker.Worker``.

The doorbell is ``broker.pubsub.Listener`` on the channels of the stores this replica delivers:
an append's announcement carries its events, handed to those stores' workers. It is only a
doorbell as far as correctness goes: workers also poll the log, so a lost message or a broken
connection costs latency only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any, Literal

from .. import codec
from ..aio import cancel_and_wait
from ..archive import Archive
from ..errors import BrokerError
from ..keys import WEBHOOK_DISPATCHERS, StoreKeys, WebhookKeys
from ..log import EventLog
from ..pubsub import Listener
from ..redis import call, load_script, run_scripts
from .delivery import Sender
from .options import DispatcherOptions, DispatchObserver, Unobserved
from .progress import ProgressStore
from .targets import Resolver
from .worker import Ref, Shared, Worker

log = logging.getLogger("deltagate.dispatcher")

DOORBELL_TICK = 0.2
"""Seconds between updates of the channels the doorbell listens to."""
RETRY_COOLDOWN = 5.0
"""Seconds before a replica takes a subscription back after its worker failed."""


class Dispatcher:
    """One dispatcher replica. ``await run()`` delivers until ``await close()``, which drains:
    no new requests, those in flight finish (within ``drain_seconds``), progress is saved and
    the leases are released for other replicas."""

    def __init__(
        self,
        redis: Any,
        options: DispatcherOptions | None = None,
        *,
        observer: DispatchObserver | None = None,
        rng: random.Random | None = None,
        resolver: Resolver | None = None,
        archive: Archive | None = None,
    ) -> None:
        """``archive``: the deployment's PostgreSQL archive, so catch-up reads what retention
        moved out of Redis (the caller closes it)."""
        self._redis = redis
        self.options = options or DispatcherOptions()
        self.store = ProgressStore(redis)
        self.rng = rng or random.Random()
        self.replica = self.options.replica_id or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        )
        self._sender = Sender(
            timeout=self.options.timeout,
            max_connections=self.options.max_connections,
            targets=self.options.targets,
            resolver=resolver,
        )
        self._shared = Shared(
            progress=self.store,
            log=EventLog(redis, archive=archive),
            sender=self._sender,
            options=self.options,
            observer=observer or Unobserved(),
            rng=self.rng,
            replica=self.replica,
        )
        self._lease = load_script(redis, "wh_lease")
        self._workers: dict[Ref, Worker] = {}
        self._by_store: dict[str, set[Worker]] = {}
        self._cooldown: dict[Ref, float] = {}
        self._heads: dict[str, int] = {}
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._state: Literal["new", "running", "draining", "closed"] = "new"
        self._doorbell = Listener(
            redis, self, tick_interval=DOORBELL_TICK, name="dispatcher doorbell"
        )
        self.healthy = False
        """True while Redis answers the balancing loop."""
        self.replicas = 1

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._state in ("draining", "closed")

    async def run(self) -> None:
        if self._state != "new":
            raise RuntimeError("a Dispatcher runs once")
        self._state = "running"
        self._sender.ssl_context()  # the CA certificates, loaded once, before any delivery
        loop = asyncio.get_running_loop()
        every = self._every
        tasks = [
            loop.create_task(every(self.options.poll_interval, self._balance), name="balance"),
            loop.create_task(every(self.options.lease_seconds / 3, self._renew), name="renew"),
        ]
        await self._doorbell.start()
        try:
            await self._stop.wait()
            self._state = "draining"
            await self._drain()
        finally:
            await cancel_and_wait(tasks)
            await self._doorbell.close()
            workers = list(self._workers.values())
            await cancel_and_wait(w.task for w in workers)
            await self._release([w.ref for w in workers])
            await self.store.close()  # (each worker closed its connections: Target.close)
            with contextlib.suppress(BrokerError):
                await asyncio.wait_for(call(self._redis.zrem(WEBHOOK_DISPATCHERS, self.replica)), 2)
            self._workers.clear()
            self._by_store.clear()
            self._state = "closed"
            self._done.set()

    async def close(self) -> None:
        """Drain and stop; safe to call twice, and before ``run``."""
        if self._state == "new":
            self._state = "closed"
            return
        self._stop.set()
        await self._done.wait()

    async def _drain(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            worker.stop()
        if workers:
            await asyncio.wait([w.task for w in workers], timeout=self.options.drain_seconds)
        for worker in workers:
            if worker.task.done():
                self._forget(worker)
        await self._release([w.ref for w in workers if w.task.done()])

    # -- what the CLI and metrics read ------------------------------------------------------

    def lags(self) -> dict[Ref, int]:
        """Events (of any type) each owned subscription is behind its store's head."""
        return {
            ref: max(0, self._heads.get(ref[0], w.position) - w.position)
            for ref, w in self._workers.items()
        }

    def owned(self) -> list[Ref]:
        return list(self._workers)

    # -- balancing --------------------------------------------------------------------------

    async def _every(self, interval: float, step: Callable[[], Any]) -> None:
        """Run ``step`` every ``interval`` seconds; a failure is logged, never fatal."""
        while True:
            try:
                await step()
                self.healthy = True
            except BrokerError as exc:
                self.healthy = False
                log.warning("dispatcher cannot reach Redis", extra={"error": exc.message})
            except Exception:
                self.healthy = False
                log.exception("dispatcher error", extra={"step": step.__name__})
            await asyncio.sleep(interval)

    async def _balance(self) -> None:
        ttl_ms = int(self.options.lease_seconds * 1000)
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(WEBHOOK_DISPATCHERS, {self.replica: now_ms})
            pipe.zremrangebyscore(WEBHOOK_DISPATCHERS, "-inf", now_ms - ttl_ms)
            pipe.zcard(WEBHOOK_DISPATCHERS)
            _, _, replicas = await call(pipe.execute())
        self.replicas = max(1, int(replicas))
        await self._reap()
        refs = await self.store.all_refs()
        known = set(refs)
        for ref, worker in list(self._workers.items()):
            if ref not in known:
                await self._cancel(worker)
        owned = list(self._workers.items())
        revisions = await self.store.revisions([ref for ref, _ in owned])
        for (_, worker), rev in zip(owned, revisions, strict=True):
            if rev is None:
                await self._cancel(worker)
            elif rev != worker.rev:
                worker.reload()
        self._heads = await self.store.heads(sorted(self._by_store))
        if self._state != "running":
            return
        share = math.ceil(len(refs) / self.replicas)
        running = [w for w in self._workers.values() if not w.stopping]
        if len(running) > share:
            # Replicas joined: hand the excess over (each finishes its requests first).
            for worker in running[share:]:
                worker.stop()
            return
        await self._acquire([r for r in refs if r not in self._workers], share - len(running))

    async def _acquire(self, candidates: list[Ref], need: int) -> None:
        now = time.monotonic()
        candidates = [r for r in candidates if self._cooldown.get(r, 0.0) <= now]
        if need <= 0 or not candidates:
            return
        self.rng.shuffle(candidates)
        async with self._redis.pipeline(transaction=False) as pipe:
            for store, sub_id in candidates:
                pipe.exists(WebhookKeys(store).lease(sub_id))
            held = await call(pipe.execute())
        for ref, taken in zip(candidates, held, strict=True):
            if need <= 0 or self._state != "running":
                return
            if taken:
                continue
            started = time.monotonic()
            if await self._lease_op("acquire", ref):
                worker = Worker(self._shared, ref, started + self.options.lease_seconds)
                self._workers[ref] = worker
                self._by_store.setdefault(ref[0], set()).add(worker)
                need -= 1

    async def _reap(self) -> None:
        """Forget workers that ended; release the leases of those that ended on their own."""
        release: list[Ref] = []
        for worker in [w for w in self._workers.values() if w.task.done()]:
            self._forget(worker)
            if worker.task.cancelled():
                continue
            exc = worker.task.exception()
            if exc is None:
                if worker.task.result() in ("stopped", "restart"):
                    release.append(worker.ref)  # (a restart is taken again at the next poll)
                continue
            self._cooldown[worker.ref] = time.monotonic() + RETRY_COOLDOWN
            if isinstance(exc, BrokerError):
                log.warning(
                    "webhook subscription paused by a Redis error; retrying",
                    extra={"store": worker.store, "subscription": worker.id, "error": exc.message},
                )
            else:
                log.error(
                    "webhook worker failed",
                    exc_info=exc,
                    extra={"store": worker.store, "subscription": worker.id},
                )
                release.append(worker.ref)
        await self._release(release)

    def _forget(self, worker: Worker) -> None:
        if self._workers.get(worker.ref) is worker:
            del self._workers[worker.ref]
        peers = self._by_store.get(worker.store)
        if peers is not None:
            peers.discard(worker)
            if not peers:
                del self._by_store[worker.store]

    async def _cancel(self, worker: Worker) -> None:
        await cancel_and_wait([worker.task])
        self._forget(worker)

    # -- leases -----------------------------------------------------------------------------

    async def _lease_op(self, op: str, ref: Ref) -> bool:
        store, sub_id = ref
        ttl_ms = int(self.options.lease_seconds * 1000)
        return bool(
            await call(
                self._lease(
                    keys=[WebhookKeys(store).lease(sub_id)], args=[op, self.replica, ttl_ms]
                )
            )
        )

    async def _renew(self) -> None:
        workers = list(self._workers.values())
        if not workers:
            return
        started = time.monotonic()
        ttl_ms = int(self.options.lease_seconds * 1000)
        renewals = [
            ([WebhookKeys(w.store).lease(w.id)], ["renew", self.replica, ttl_ms]) for w in workers
        ]
        held: list[Any]
        try:
            held = await run_scripts(self._redis, self._lease, renewals)
        except BrokerError as exc:
            held = [exc] * len(workers)
        failed = None
        for w, answer in zip(workers, held, strict=True):
            if isinstance(answer, Exception):
                # Cannot tell (Redis, or this lease's shard, unreachable): stop the worker once
                # the lease may no longer be ours.
                failed = failed or answer
                if time.monotonic() >= w.valid_until:
                    w.task.cancel()
            elif answer:
                w.valid_until = started + self.options.lease_seconds
            elif not w.task.done():
                log.info(
                    "lease lost: another replica delivers this subscription now",
                    extra={"store": w.store, "subscription": w.id},
                )
                w.task.cancel()
        if failed is not None:
            raise failed

    async def _release(self, refs: list[Ref]) -> None:
        for ref in refs:
            try:
                await asyncio.wait_for(self._lease_op("release", ref), 2)
            except (BrokerError, TimeoutError):
                return  # the leases expire by themselves

    # -- the doorbell (broker.pubsub.Listener's owner) -----------------------------------------
    # Hands what an append announces on its store's channel to that store's workers (the
    # announcement carries the events' JSON). Only a doorbell as far as correctness goes: workers
    # also poll the log, so a lost message or a broken connection costs latency only.

    async def announced(self, channel: str, data: str) -> None:
        store = channel[channel.index("{") + 1 : channel.rindex("}")]
        workers = self._by_store.get(store)
        if workers:
            announcement = codec.decode_announcement(data)
            for worker in workers:
                worker.announce(announcement.events, announcement.epoch)

    async def tick(self) -> None:
        """Listen to the channels of the stores this replica delivers, and only those."""
        wanted = {StoreKeys(s).channel for s in self._by_store}
        have = self._doorbell.channels
        await self._doorbell.unsubscribe(*(have - wanted))
        await self._doorbell.subscribe(*(wanted - have))
