"""ShardService: one shard of the durable queue as a process serves it, a thin shell around
``herald.queue.QueueShard``; a ``QueueActor`` (``actors.queue``) hosts one or several of them
and hands each call to the shard it names.

Every method that changes state returns only once its change is committed to the shard's store
(``actors.group_commit``: the changes of every call in one round of the event loop share one
transaction), so a caller that got an answer can rely on it. Values crossing Ray are the core's
typed values (``Notification`` in, ``Accepted`` / ``Delivery`` out, ``Outcome`` /
``LeaseRenewal`` back), and failures are the core's errors (``NotFound``, ``Conflict``,
``QueueFull``, ``Unavailable``), raised: Ray carries them to the caller.

How the shard comes to be served — a start in the background, retried while it fails, a
standby while another deployment owns it (PostgreSQL), given up when fenced — is
``actors.served_shard``; the health check (``pid``) is answered throughout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from actors.group_commit import GroupCommit
from actors.ray_metrics import RayMetricsExporter
from actors.served_shard import ServedShard
from herald.admin_views import detail, summary
from herald.bounce_reports import BounceReport
from herald.channels import Channel, Lane
from herald.config import Settings
from herald.delivery import Delivery
from herald.errors import HeraldError, QueueFull, Unavailable
from herald.exchange import Exchange, ExchangeAnswer
from herald.inbox import FeedPage, FeedQuery, ReadAnswer, ReadMarks
from herald.metrics import Histogram, ShardStats
from herald.notification import Accepted, Notification
from herald.outcome import Outcome
from herald.overview import ShardFigures
from herald.queue import QueueShard
from herald.recipients import Recipient
from herald.record import Record
from herald.search import SearchPage, SearchQuery
from herald.shard_health import ShardHealth
from herald.status import FINAL
from herald.suppressions import Suppression

log = logging.getLogger("herald.queue")
RETENTION_EVERY_SECONDS = 60.0
RETENTION_BATCH = 500


class ShardService:
    def __init__(self, shard: int, settings: Settings, metrics: RayMetricsExporter) -> None:
        self._shard_id = shard
        self._settings = settings
        self._wakeups: dict[Lane, asyncio.Event] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._timer: asyncio.Task[None] | None = None
        self._metrics = metrics
        self._retention_at = 0.0
        self._ship_at = 0.0
        self._calls = 0  # API calls answered (``herald_shard_calls_total``)
        #: The shard, once started or taken over (``actors.served_shard``), and its health.
        self._served = ServedShard(shard, settings, on_up=self._ensure_timer)
        #: Every change is answered after its group commit (``actors.group_commit``).
        self._group = GroupCommit(shard, reload_on_failure=settings.database_url is not None,
                                  lose=self._served.lose, committed=self._committed,
                                  window_seconds=settings.commit_window_ms / 1000)

    async def _ready(self, counted: bool = True) -> QueueShard:
        """The shard, once served. Every call that moves or reads notifications starts here and
        is counted (``herald_shard_calls_total``); reads of figures (``stats``, the health
        checks) are not: they follow who is watching, not the work."""
        self._calls += counted
        return await self._served.ready()

    # -- plumbing -------------------------------------------------------------------------
    def _event(self, lane: Lane) -> asyncio.Event:
        event = self._wakeups.get(lane)
        if event is None:
            event = self._wakeups[lane] = asyncio.Event()
        return event

    def _ensure_timer(self) -> None:
        if self._served.shard is not None and (self._timer is None or self._timer.done()):
            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        """Let time pass: expired leases, due retries and expired notifications (written), old
        records deleted. One failing round (a locked or full disk) is logged and the next one
        tries again: the timer never stops."""
        shard = await self._served.ready()  # not a call: not counted
        while self._served.shard is shard:  # a lost shard's timer ends; the next start makes its own
            due = shard.next_wakeup()
            delay = 1.0 if due is None else min(1.0, max(0.01, due - time.time()))
            await asyncio.sleep(delay)
            try:
                self._served.renew(shard)
                if self._tick_once(shard, due):
                    await self._group.commit(shard)
                    for event in self._wakeups.values():
                        event.set()
                await self._retention(shard)
            except Unavailable:
                pass  # counted by _flush; callers see it, the timer tries again
            except Exception:
                log.exception("shard timer round failed", extra={"shard": self._shard_id})

    def _tick_once(self, shard: QueueShard, due: float | None) -> bool:
        """One round of the timer; True when time changed the shard (to be committed)."""
        now = time.time()
        shipper = self._served.shipper
        if shipper is not None and now >= self._ship_at:
            self._ship_at = now + 1.0  # the delivery log, once a second whatever woke us
            shipper.ship(now)
        if self._metrics.due():  # Ray's metrics, every few seconds, never per message
            self._metrics.publish(shard.counters, shard.depth(), tags={"shard": self._shard_id})
        if due is not None and due <= now:
            shard.tick(now)
            return True
        return False

    async def _retention(self, shard: QueueShard) -> None:
        """Once a minute, delete final records older than ``retention_days`` (and claims past
        the longest TTL), a small batch at a time."""
        now = time.time()
        if now < self._retention_at:
            return
        self._retention_at = now + RETENTION_EVERY_SECONDS
        keep = self._settings.retention_days * 86400
        # On the loop, not a thread: one SQLite connection, used by one thread at a time.
        for _ in range(100):  # at most 50,000 a minute, in small batches with calls in between
            if shard.delete_final(now, keep, RETENTION_BATCH) < RETENTION_BATCH:
                return
            await asyncio.sleep(0)

    def _committed(self, shard: QueueShard) -> None:
        """After each group commit: the lease was renewed by it; wake ``?wait`` callers."""
        self._served.committed()
        self._finished(shard.take_finished())

    def _notify(self, lanes: set[Lane]) -> None:
        for lane in lanes:
            self._event(lane).set()

    def _finished(self, tags: Sequence[str]) -> None:
        for tag in tags:
            for future in self._waiters.pop(tag, ()):
                if not future.done():
                    future.set_result(None)
        if tags:
            self._notify({Lane(Channel.WEBHOOK)})  # final states may have queued callbacks

    # -- API ------------------------------------------------------------------------------
    async def pid(self) -> int:
        """Health: answered at once, even while the shard is still recovering."""
        self._ensure_timer()
        return os.getpid()

    async def health(self) -> ShardHealth:
        """Starting, up, or down and why (``/healthz``, the admin overview); answered at once."""
        return self._served.health

    async def close(self) -> None:
        """Before the actor goes: the last delivery-log events shipped (SQLite), or the lease
        given up (PostgreSQL). A standby or a shard that is down has neither."""
        await self._ready()
        self._served.close()

    async def ready(self) -> bool:
        await self._ready()
        return True

    async def enqueue(self, notifications: list[Notification]) -> list[Accepted | QueueFull]:
        """Accept validated notifications; durable before this returns. Each one over the
        limit (by count or by bytes, each tenant within its fair share: ``herald.fair_share``)
        is answered ``QueueFull`` in its place; a batch mixes tenants."""
        shard = await self._ready()
        shards = self._settings.shards
        refused = shard.refusals(notifications, self._settings.queue_limit // shards,
                                 self._settings.queue_limit_bytes // shards)
        admitted = [n for n, why in zip(notifications, refused, strict=True) if why is None]
        accepted = iter(shard.enqueue(admitted, time.time()) if admitted else ())
        await self._group.commit(shard)
        self._notify({shard.lane_of(n.channel, n.tenant, n.uid) for n in admitted})
        return [why if why is not None else next(accepted) for why in refused]

    async def exchange(self, request: Exchange) -> ExchangeAnswer:
        """A channel actor's one call per tick (``herald.exchange``): its outcomes applied, its
        renewals kept, then up to ``want`` deliveries of its lane, all in one commit; with
        ``wait``, holds up to that long for the first delivery (a long poll: an idle pool
        costs nothing)."""
        shard = await self._ready()
        now = time.time()
        finished = shard.ack(request.outcomes, now) if request.outcomes else []
        renewed = (shard.renew(request.renewals, now, self._settings.lease_seconds)
                   if request.renewals else 0)
        leased = await self._lease(shard, request.lane, request.want, request.wait,
                                   request.min_priority) if request.want else []
        if not request.want:
            await self._group.commit(shard)
        return ExchangeAnswer(leased, renewed, len(finished))

    async def _lease(self, shard: QueueShard, lane: Lane, limit: int, wait: float,
                     min_priority: int) -> list[Delivery]:
        """Lease and commit (with whatever else this round changed); long-poll while empty."""
        deadline = time.monotonic() + wait
        event = self._event(lane)
        while self._served.shard is shard:
            event.clear()
            leased = shard.lease(lane, limit, time.time(), self._settings.lease_seconds,
                                 min_priority)
            await self._group.commit(shard)
            if leased:
                return leased
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return []
        return []  # the shard was lost (fenced, or its store): nothing more from this one

    async def ack(self, outcomes: list[Outcome]) -> int:
        """Apply outcomes; durable before this returns. Returns how many reached a final state."""
        shard = await self._ready()
        finished = shard.ack(outcomes, time.time())
        await self._group.commit(shard)
        return len(finished)

    async def claimed(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """Idempotency keys (tenant, key) taken here, with the tag that holds each."""
        shard = await self._ready()
        return shard.claimed(keys)

    async def claim(self, entries: list[tuple[str, str, str]]) -> list[str]:
        """Claim (tenant, key, tag) for notifications accepted on other shards; the holder of
        each key. Durable before this returns."""
        shard = await self._ready()
        return shard.claim(entries, time.time())

    async def recipient(self, tenant: str, uid: str) -> Recipient | None:
        """The user's settings (``herald.recipients``), if they have any."""
        shard = await self._ready()
        return shard.recipients.get(tenant, uid)

    async def set_recipient(self, tenant: str, uid: str, recipient: Recipient | None) -> None:
        """Keep the user's settings (None: forget them); on disk before this returns."""
        shard = await self._ready()
        if recipient is None:
            shard.recipients.forget(tenant, uid, time.time())
        else:
            shard.recipients.put(tenant, uid, recipient, time.time())

    async def feed(self, query: FeedQuery) -> FeedPage:
        """A page of a user's inbox feed (``herald.inbox``), from committed state."""
        shard = await self._ready()
        await self._group.settled()
        return shard.feed(query, time.time())

    async def mark_read(self, tenant: str, uid: str, marks: ReadMarks) -> ReadAnswer:
        """Mark a user's feed items read; on disk before this returns."""
        shard = await self._ready()
        await self._group.settled()
        return shard.mark_read(tenant, uid, marks, time.time())

    async def bounce(self, report: BounceReport) -> tuple[str, Suppression] | None:
        """A hard bounce or complaint for one of this shard's emails: whom to suppress."""
        shard = await self._ready()
        found = shard.bounce(report, time.time())
        await self._group.commit(shard)
        return found

    async def suppressions(self, tenant: str) -> list[Suppression]:
        """The tenant's suppressed contacts (every shard keeps them all), newest first."""
        return list((await self._ready()).suppressions.of(tenant))

    async def suppress(self, tenant: str, entry: Suppression | None, contact: str = "",
                       sender: str | None = None) -> int:
        """Add ``entry``, or (None) lift ``contact``'s suppressions (those for ``sender`` only,
        if given); how many changed. On disk before this returns."""
        shard, now = await self._ready(), time.time()
        if entry is not None:
            shard.suppressions.add(tenant, entry, now)
            return 1
        return shard.suppressions.remove(tenant, contact, now, sender)

    async def unpark(self, tenant: str, uid: str) -> list[str]:
        """A browser user connected: their parked notifications become ready, in order (their
        tags: the gateway sends them before anything newer of the user's)."""
        shard = await self._ready()
        released = shard.unpark(tenant, uid, time.time())
        if released:
            self._notify({shard.lane_of(Channel.BROWSER, tenant, uid)})
        return released

    async def receipts(self, outcomes: list[Outcome]) -> list[bool]:
        """Provider receipts (delivered/failed), in one commit: True = applied or held
        (durably) for a notification still being sent; False = not ours."""
        shard = await self._ready()
        now = time.time()
        applied = [shard.receipt(outcome, now) for outcome in outcomes]
        await self._group.commit(shard)
        return applied

    async def get(self, tag: str, tenant: str, wait: float = 0.0) -> dict[str, Any]:
        """The status view of a notification (``NotFound`` if it is not this tenant's); with
        ``wait``, hold up to that many seconds for a final state."""
        shard = await self._ready()
        await self._group.settled()  # answer from committed state only
        record = shard.get(tag, tenant)
        if wait > 0 and record.status not in FINAL:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._waiters.setdefault(tag, [])
            waiters.append(future)
            try:
                await asyncio.wait_for(future, wait)
            except TimeoutError:
                pass
            finally:  # a timed-out wait must not stay registered until the tag is final
                if future in waiters:
                    waiters.remove(future)
                if not waiters:
                    self._waiters.pop(tag, None)
            record = shard.get(tag, tenant)
        return record.public()

    async def cancel(self, tag: str, tenant: str) -> dict[str, Any]:
        shard = await self._ready()
        record = shard.cancel(tag, tenant, time.time())
        await self._group.commit(shard)
        return record.public()

    async def revive(self, tag: str, tenant: str) -> dict[str, Any]:
        """Retry a dead-lettered notification (``Conflict`` unless it is dead)."""
        shard = await self._ready()
        record = shard.revive(tag, tenant, time.time())
        await self._group.commit(shard)
        self._notify({shard.lane_of(record.channel, record.tenant, record.uid)})
        return record.public()

    async def stats(self, tenant: str | None = None) -> ShardStats:
        """This shard's figures: service-wide, or only ``tenant``'s (no latency histogram)."""
        shard = await self._ready(counted=False)
        if tenant is None:
            counters = dict(shard.counters)
            counters["store_commits"] = self._served.commits
            counters["shard_calls"] = self._calls
            return ShardStats(self._shard_id, shard.depth(), counters, shard.latency)
        return ShardStats(self._shard_id, shard.depth(tenant), shard.tenant_counters(tenant),
                          Histogram())

    # -- the admin console (serve/admin.py): every tenant's notifications -----------------
    async def admin_stats(self) -> ShardFigures:
        shard = await self._ready(counted=False)
        return ShardFigures(self._shard_id, shard.depth(), dict(shard.counters),
                            shard.oldest_waiting(), shard.dead_letters(), shard.pauses.since())

    async def admin_search(self, query: SearchQuery) -> SearchPage:
        """Rows of the admin list: up to ``query.limit`` matches, newest first, among at most
        ``admin_search_scan`` records. In a thread, over a read-only connection of its own: a
        long search holds up no other call of this shard."""
        shard = await self._ready()
        found = await asyncio.to_thread(shard.scan, query, self._settings.admin_search_scan)
        return SearchPage([summary(record) for record in found.records], found.scanned_to)

    async def admin_get(self, tag: str) -> dict[str, Any]:
        """A notification's admin page (any tenant's; ``NotFound`` if there is none)."""
        shard = await self._ready()
        return detail(shard.find(tag))

    async def admin_retry(self, tags: list[str]) -> list[dict[str, Any] | HeraldError]:
        """Send dead or failed notifications again: each one's new row, or why not."""
        return await self._admin_each(tags, QueueShard.revive_any)

    async def admin_cancel(self, tags: list[str]) -> list[dict[str, Any] | HeraldError]:
        """Cancel queued or retrying notifications: each one's new row, or why not."""
        return await self._admin_each(tags, QueueShard.cancel_any)

    async def _admin_each(self, tags: list[str], change: Callable[[QueueShard, str, float], Record]
                          ) -> list[dict[str, Any] | HeraldError]:
        """Apply ``change`` to each tag, then write them all in one commit."""
        shard = await self._ready()
        now = time.time()
        results: list[dict[str, Any] | HeraldError] = []
        lanes: set[Lane] = set()
        for tag in tags:
            try:
                record = change(shard, tag, now)
            except HeraldError as exc:
                results.append(exc)
                continue
            results.append(summary(record))
            lanes.add(shard.lane_of(record.channel, record.tenant, record.uid))
        await self._group.commit(shard)
        self._notify(lanes)
        return results

    async def pause(self, channel: Channel) -> dict[str, float]:
        """Lease nothing of ``channel`` until ``resume``, restarts included; the paused ones."""
        shard = await self._ready()
        shard.pause(channel, time.time())
        return shard.pauses.since()

    async def resume(self, channel: Channel) -> dict[str, float]:
        """Deliver ``channel`` again (its waiting work leaves in order); the paused ones."""
        shard = await self._ready()
        shard.resume(channel)
        self._notify({lane for lane in self._wakeups if lane.channel is channel})
        return shard.pauses.since()

    async def set_preference(self, tenant: str, uid: str, category: str, channel_key: str,
                             on: bool) -> Recipient:
        shard = await self._ready()  # herald.recipient_book: one read-modify-write, on disk
        return shard.recipients.set_preference(tenant, uid, category, channel_key, on, time.time())
