"""ChannelActor: pulls leases from every queue shard, delivers through its providers, hands back.

Pull, not push: an actor only leases what it has room for (``channel_concurrency`` split
evenly across shards), which is the backpressure. Each call to a shard is one ``exchange``
(``herald.exchange``): the outcomes waiting go back and new work comes out together, so at
load one call and one commit move hundreds; outcomes no lease call carried within
``ACK_WINDOW_SECONDS`` go in a call of their own, and lease renewals ride a heartbeat.
A restarted actor (Ray ``max_restarts``) starts pulling again from ``__init__``, and what its
previous life had leased comes back when the leases expire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import ray
from ray.exceptions import RayActorError

from actors.clients import ShardClient, on_every_shard
from actors.provider_chain import ProviderChain
from actors.providers.registry import build_providers
from actors.providers.smtp_email import RCPT_REFUSED
from actors.ratelimiter import RateLimitClient
from actors.ray_metrics import RayMetricsExporter
from herald.channels import Channel, Lane
from herald.config import Settings
from herald.delivery import Delivery
from herald.errors import TemplateError, TransientProviderError, Unavailable
from herald.exchange import Exchange
from herald.outcome import Outcome, outcome_from_error
from herald.pool_views import ChannelPing
from herald.priority import ASAP_PRIORITY
from herald.queue import LeaseRenewal
from herald.render import Message, render_message
from herald.sharding import shard_for_uid
from herald.sms_keywords import TWILIO_UNSUBSCRIBED
from herald.suppressions import BOUNCED, EVERY_TENANT, STOP, Suppression, contact_key
from herald.unsubscribe_tokens import UnsubscribeLinks

log = logging.getLogger("herald.channels")
#: How long an outcome may wait to ride back with a lease before it goes in a call of its own:
#: at load the pullers carry them (one call hands back and leases hundreds); idle, this is how
#: much later a final status is known.
ACK_WINDOW_SECONDS = 0.05
#: Parks (a browser user offline) wait no longer than this: that user's reconnect waits for them.
PARK_WINDOW_SECONDS = 0.005
#: How long they may wait while the link is busy: at load, what bounds the calls an idle-ish
#: shard link makes (a few a second), and how much later a final status is known then.
ACK_HOLD_SECONDS = 0.25
#: The part of a shard's slots that must be free before a busy actor leases again: the larger,
#: the more each exchange carries (fewer calls and commits), the emptier the slots on average.
REFILL_AT = 0.5
#: How long a lease call waits at the shard for work when there is none (an idle pool's poll).
LONG_POLL_SECONDS = 1.0
#: Sends per shard kept for asap (and higher) notifications: while a backlog fills every
#: normal slot, an asap one is leased at once, not after a quarter of those sends finished.
EXPRESS_SLOTS = 2


class _ShardLink:
    """Per-shard state of one channel actor: sends in flight and the outcomes to hand back."""

    def __init__(self, shard: ShardClient, capacity: int) -> None:
        self.shard = shard
        self.capacity = capacity
        self.inflight = 0  # normal slots taken (leased, or reserved by a call on its way)
        self.express = 0  # sends in flight in the express slots
        self.express_freed = asyncio.Event()
        #: tag → lease token of each delivery being sent: what the heartbeat renews.
        self.sending: dict[str, float] = {}
        self.slot_freed = asyncio.Event()
        #: Outcomes not handed back yet, and whether one came since the flusher last looked.
        self.acks: list[Outcome] = []
        self.acks_ready = asyncio.Event()
        self.acking = 0  # outcomes in an exchange not answered yet

    def take_acks(self) -> list[Outcome]:
        """The outcomes waiting, now on their way in one call (counted until it answers)."""
        batch, self.acks = self.acks, []
        self.acking += len(batch)
        return batch

    def handed_back(self, batch: list[Outcome], ok: bool) -> None:
        """The call carrying ``batch`` answered (``ok``) or failed: then they go again, first."""
        self.acking -= len(batch)
        if not ok and batch:
            self.acks[:0] = batch
            self.acks_ready.set()

    def renewals(self) -> list[LeaseRenewal]:
        """Every lease this actor still works on: sends in flight, outcomes not handed back."""
        renewals = [LeaseRenewal(tag, token) for tag, token in self.sending.items()]
        return renewals + [LeaseRenewal(o.tag, o.lease) for o in self.acks if o.lease is not None]


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)  # type: ignore[call-overload]
class ChannelActor:
    def __init__(
        self, channel: Channel, index: int, shards: Sequence[ShardClient], settings: Settings,
        limiter: Any = None,
    ) -> None:
        self._channel = channel
        self._lane = Lane.of_actor(channel, index)
        self._limiter = limiter
        self._index = index
        self._shards = list(shards)
        self._settings = settings
        #: Every email's List-Unsubscribe link (RFC 8058) is signed here.
        self._unsubscribe = UnsubscribeLinks.of(settings.unsubscribe_secret, settings.base_url()) \
            if channel is Channel.EMAIL else None
        self._links: list[_ShardLink] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._chain: ProviderChain | None = None
        self._stopping = False
        self._started_at = time.time()
        self.counters = dict.fromkeys(("sent", "delivered", "retry", "failed", "park", "defer"), 0)
        self._starting: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        #: tag → the link and kind of slot each send still holds (until its provider releases
        #: it, ``Provider.set_slot_release``, or its outcome comes).
        self._holding: dict[str, tuple[_ShardLink, bool]] = {}
        self._metrics = RayMetricsExporter.for_channel_actor()
        # Async actors run __init__ on their event loop: start pulling right away.
        asyncio.get_running_loop().create_task(self._ensure_started())

    async def _ensure_started(self) -> None:
        """Start pulling (once). Runs from ``__init__``, so a restarted actor resumes by itself."""
        failed = self._starting is not None and self._starting.done() and (
            self._starting.cancelled() or self._starting.exception() is not None)
        if self._starting is None or failed:  # a failed start is tried again on the next ping
            self._links, self._chain = [], None
            self._starting = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        providers = build_providers(self._channel, self._settings, self._index, self._on_connect,
                                    node_ip=ray.util.get_node_ip_address())
        limits = None
        if self._limiter is not None:
            limits = RateLimitClient(self._limiter, set(self._settings.rate_limits),
                                     set(self._settings.recipient_limits))
        for provider in providers:
            provider.set_slot_release(self._release_slot)
        chain = ProviderChain(providers, self._settings.breaker_threshold,
                              self._settings.breaker_cooldown, limits)
        self._chain = chain
        await chain.start()
        per_shard = max(1, self._settings.channel_concurrency // len(self._shards))
        loop = asyncio.get_running_loop()
        for shard in self._shards:
            link = _ShardLink(shard, per_shard)
            self._links.append(link)
            self._tasks.append(loop.create_task(self._pull(link)))
            self._tasks.append(loop.create_task(self._pull_express(link)))
            self._tasks.append(loop.create_task(self._flusher(link)))
            self._tasks.append(loop.create_task(self._heartbeat(link)))
        log.info("%s actor %d pulling from %d shards", self._channel.value, self._index,
                 len(self._links))

    async def _on_connect(self, tenant: str, uid: str) -> list[str]:
        """A browser user connected here: ask their shard to release what waits for them."""
        return await self._shards[shard_for_uid(uid, len(self._shards))].unpark(tenant, uid)

    async def ping(self) -> ChannelPing:
        """Health and figures; the Supervisor's health loop calls it every second. ``endpoint``:
        where browsers connect to this actor's gateway (``/v1/browser-endpoint`` asks)."""
        await self._ensure_started()
        providers = self._chain.providers if self._chain else []
        breakers = self._chain.states() if self._chain else {}
        if self._metrics.due():
            self._metrics.publish(self.counters, tags={"channel": self._channel.key,
                                                       "actor": self._index},
                                  breakers=breakers)
        return ChannelPing(
            pid=os.getpid(), channel=self._channel.value, index=self._index,
            started_at=self._started_at,
            inflight=sum(link.inflight + link.express for link in self._links),
            sending=len(self._deliveries) + sum(len(link.acks) + link.acking
                                                for link in self._links),
            waiting=sum(provider.waiting() for provider in providers),
            breakers=breakers, counters=dict(self.counters),
            endpoint=next((p.endpoint for p in providers if p.endpoint), None),
        )

    async def _exchange(self, link: _ShardLink, want: int = 0, wait: float = 0.0,
                        min_priority: int = 0, renew: bool = False,
                        carry: bool = True) -> list[Delivery]:
        """One call to the shard: every outcome waiting (unless not ``carry``; with ``renew``,
        every lease still worked on too) handed back, up to ``want`` new deliveries asked for.
        A failed call hands its outcomes back again with the next one."""
        outcomes = link.take_acks() if carry else []
        # Outcomes are answered at once (their providers' ``acked`` hooks wait for it); the
        # long poll is for a call that carries none.
        request = Exchange(self._lane, outcomes, link.renewals() if renew else [], want,
                           0.0 if outcomes else wait, min_priority)
        try:
            answer = await link.shard.exchange(request)
        except Exception as exc:
            link.handed_back(outcomes, ok=False)
            # A standby's shards (PostgreSQL: another deployment is active) and a shard that
            # is restarting answer Unavailable for as long as that lasts: no traceback twice
            # a second for each of them.
            if not isinstance(exc, RayActorError | Unavailable):
                log.exception("exchange with shard %d failed", link.shard.index)
            await asyncio.sleep(0.5)
            return []
        link.handed_back(outcomes, ok=True)
        if outcomes and self._chain is not None:
            for provider in self._chain.providers:
                await provider.acked(outcomes)
        return answer.leased

    async def _pull(self, link: _ShardLink) -> None:
        """Lease into the normal slots; each call also hands back the outcomes waiting."""
        found = True
        while not self._stopping:
            room = link.capacity - link.inflight
            # Lease in batches: while busy, wait until REFILL_AT of the room is free rather than
            # calling the shard for every slot that frees up.
            if room <= 0 or (link.inflight > 0 and self._normal_full(link)):
                link.express_freed.set()  # the express puller takes over asap work meanwhile
                link.slot_freed.clear()
                await link.slot_freed.wait()
                continue
            want = min(room, self._settings.lease_batch)
            link.inflight += want  # reserve before the await so the room stays honest
            # After a call that found nothing, a long poll that carries nothing: otherwise a
            # link whose lane is empty would turn round for every outcome (the flusher has them).
            items = await self._exchange(link, want, LONG_POLL_SECONDS, carry=found)
            found = bool(items)
            link.inflight -= want - len(items)
            self._spawn(link, items, express=False)

    async def _pull_express(self, link: _ShardLink) -> None:
        """Lease only asap (and higher) work into the express slots, while the normal slots are
        full: while they have room, the normal puller leases asap work first anyway, and a
        second long poll per shard would only double an idle pool's calls."""
        while not self._stopping:
            room = EXPRESS_SLOTS - link.express
            if room <= 0 or not self._normal_full(link):
                link.express_freed.clear()
                await link.express_freed.wait()
                continue
            link.express += room
            # It carries no outcomes: a call that does is answered at once, and this one
            # should wait for asap work, not turn round for every outcome of a busy link.
            items = await self._exchange(link, room, LONG_POLL_SECONDS, ASAP_PRIORITY,
                                         carry=False)
            link.express -= room - len(items)
            self._spawn(link, items, express=True)

    @staticmethod
    def _normal_full(link: _ShardLink) -> bool:
        """Whether the normal puller waits for room (it makes no call meanwhile)."""
        return link.capacity - link.inflight < max(1, int(link.capacity * REFILL_AT))

    def _spawn(self, link: _ShardLink, items: list[Delivery], express: bool) -> None:
        # Even when stopping, what was leased is delivered (drain waits for it).
        for item in items:
            task = asyncio.get_running_loop().create_task(self._deliver(link, item, express))
            self._deliveries.add(task)  # keep a reference: the loop holds tasks weakly
            task.add_done_callback(self._deliveries.discard)

    def _release_slot(self, tag: str) -> None:
        """A provider no longer needs ``tag``'s slot (its outcome is still to come: a browser
        frame written, the ack awaited): the slot takes more work, the lease stays renewed."""
        held = self._holding.pop(tag, None)
        if held is not None:
            self._free_slot(*held)

    @staticmethod
    def _free_slot(link: _ShardLink, express: bool) -> None:
        if express:
            link.express -= 1
            link.express_freed.set()
        else:
            link.inflight -= 1
            link.slot_freed.set()

    async def _attempt(self, message: Message) -> Outcome:
        """One deadline per attempt, whatever the provider does (a send waiting for a pooled
        connection included); the heartbeat keeps the lease meanwhile."""
        assert self._chain is not None
        timeout = self._settings.attempt_timeout
        try:
            async with asyncio.timeout(timeout):
                return await self._chain.send(message)
        except TimeoutError as exc:
            raise TransientProviderError(f"no answer within {timeout:g}s", "deadline") from exc

    async def _deliver(self, link: _ShardLink, delivery: Delivery, express: bool = False) -> None:
        assert self._chain is not None
        link.sending[delivery.tag] = delivery.lease
        self._holding[delivery.tag] = (link, express)
        message = None
        try:
            if time.time() >= delivery.expires_at:
                outcome = Outcome(delivery.tag, "failed", "herald", error="expired")
            else:
                message = render_message(delivery, self._unsubscribe)
                outcome = await self._attempt(message)
        except Exception as exc:
            if not isinstance(exc, TemplateError | TransientProviderError):
                log.exception("delivery crashed for %s", delivery.tag)
            outcome = outcome_from_error(delivery.tag, "herald", exc)
        finally:
            link.sending.pop(delivery.tag, None)
        self.counters[outcome.kind] += 1
        if message is not None and message.to and outcome.kind == "failed":
            if outcome.code == TWILIO_UNSUBSCRIBED:  # a STOP Herald never saw
                self._suppress(EVERY_TENANT, Suppression(contact_key(message.to), STOP, time.time(),
                                                         message.sender or self._settings.twilio_from or ""))
            elif (outcome.error or "").startswith(RCPT_REFUSED):  # a hard bounce at RCPT
                self._suppress(delivery.tenant, Suppression(contact_key(message.to), BOUNCED,
                                                            time.time()))
        link.acks.append(dataclasses.replace(outcome, lease=delivery.lease))
        link.acks_ready.set()
        if self._holding.pop(delivery.tag, None) is not None:
            self._free_slot(link, express)

    def _suppress(self, tenant: str, entry: Suppression) -> None:
        """A send's answer says its contact takes nothing more (Twilio's 21610, an SMTP 5xx at
        RCPT): every shard suppresses it (``herald.suppressions``), in the background."""
        task = asyncio.get_running_loop().create_task(self._suppress_everywhere(tenant, entry))
        self._background.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._background.discard)

    async def _suppress_everywhere(self, tenant: str, entry: Suppression) -> None:
        try:
            await on_every_shard(self._shards, lambda shard: shard.suppress(tenant, entry))
        except Exception:  # noqa: BLE001 - logged; the next such answer suppresses it again
            log.warning("a suppression did not reach every shard", extra={"reason": entry.reason})

    async def _flusher(self, link: _ShardLink) -> None:
        """Outcomes the pullers did not carry go back in a call of their own: after
        ``ACK_WINDOW_SECONDS`` while few sends are in flight, after up to ``ACK_HOLD_SECONDS``
        while the link is busy (a puller's call comes soon, and takes them along)."""
        while True:
            await link.acks_ready.wait()
            # Parks go back at once: a user reconnecting is released only once they are recorded.
            parks = any(outcome.kind == "park" for outcome in link.acks)
            await asyncio.sleep(PARK_WINDOW_SECONDS if parks else ACK_WINDOW_SECONDS)
            held = ACK_HOLD_SECONDS if parks else ACK_WINDOW_SECONDS
            while link.acks and held < ACK_HOLD_SECONDS and link.inflight >= link.capacity // 4:
                await asyncio.sleep(ACK_WINDOW_SECONDS)
                held += ACK_WINDOW_SECONDS
            link.acks_ready.clear()
            if link.acks:
                await self._exchange(link)

    async def _heartbeat(self, link: _ShardLink) -> None:
        """Renew the leases of sends still in flight, so a slow provider causes no duplicate."""
        interval = self._settings.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            if link.sending or link.acks:
                await self._exchange(link, renew=True)

    async def drain(self, timeout: float = 30.0) -> int:
        """Stop leasing, finish what is in flight, ack it; return how many were still in flight."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Sends whose slot went back early still await their outcome.
            busy = len(self._deliveries) + sum(link.inflight + link.express for link in self._links)
            pending = sum(len(link.acks) + link.acking for link in self._links)
            if busy == 0 and pending == 0:
                break
            await asyncio.sleep(0.05)
        left = sum(link.inflight + link.express for link in self._links)
        if self._chain is not None:
            await self._chain.close()
        return left
