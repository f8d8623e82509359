"""Supervisor: a named, detached actor that owns the shards and channel pools and keeps them alive.

Ray restarts a crashed actor (``max_restarts=-1``); the Supervisor notices (the pid changed),
counts the restart, and by pinging wakes the new incarnation so it starts pulling. An actor that
stops answering its health check within ``HEALTH_TIMEOUT`` is killed so Ray replaces it.

An actor that has never answered is not hung but being placed: on a cluster, one a grown pool
asked for may wait minutes for the node the autoscaler adds. Its first ping is left running and
looked at on each round, so it holds up neither the other checks nor the pool sizing, and it is
taken for hung only after ``PLACEMENT_TIMEOUT``.

A pool shrinks only when nothing waits and nothing is in flight (``herald.pool_sizing``); the
actor removed leaves the pool at once (not checked, not replaced) and is drained in a background
task for one attempt's deadline and a margin before it is killed, so the health loop never waits
for a drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable
from typing import Any

import ray

from actors.bounce_desk import BounceDesk
from actors.channels import ChannelActor
from actors.clients import ChannelClient, ShardClient, shard_clients
from actors.deployment_lease import DeploymentLease
from actors.queue import QueueActor
from actors.ratelimiter import RATE_LIMITER_NAME, RateLimiter
from herald.channels import Channel, actor_name
from herald.config import Settings
from herald.pool_sizing import PoolSizer, drain_seconds
from herald.pool_views import ChannelPing, SupervisorView
from herald.sharding import host_name, shard_hosts

log = logging.getLogger("herald.supervisor")
SUPERVISOR_NAME = "herald-supervisor"
NAMESPACE = "herald"
HEALTH_INTERVAL = 1.0
HEALTH_TIMEOUT = 15.0
#: How long an actor that has never answered may wait to be placed (a new cluster node can take
#: minutes) before it is taken for hung and replaced.
PLACEMENT_TIMEOUT = 600.0
#: Pools are sized from the shards' backlog this often.
SIZE_INTERVAL = 2.0
#: The custom resource of the nodes that keep the shards' disks (the queue nodes of cluster.yaml).
QUEUE_RESOURCE = "herald_queue"
#: What one shard asks of it: a sliver, so that every shard fits on one queue node.
QUEUE_RESOURCE_SHARE = 0.001


def queue_placement(settings: Settings) -> dict[str, Any]:
    """Actor options that keep shards on the queue nodes when the cluster offers
    ``herald_queue``; on a single box (or a cluster without queue nodes) none: anywhere. With
    PostgreSQL a shard keeps nothing on its node: anywhere, and after a node's loss elsewhere."""
    if settings.database_url is None and ray.cluster_resources().get(QUEUE_RESOURCE, 0) > 0:
        return {"resources": {QUEUE_RESOURCE: QUEUE_RESOURCE_SHARE}}
    return {}


def _exists(name: str) -> bool:
    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=100)  # type: ignore[call-overload]
class Supervisor:
    def __init__(self, settings: Settings, channels: list[Channel]) -> None:
        self._settings = settings
        # Detached and named: they outlive a Supervisor crash, and a restarted Supervisor
        # (get_if_exists) takes the running ones over instead of starting a second set.
        # In namespace herald whoever created the Supervisor (herald up, or Serve's build task).
        owned = {"lifetime": "detached", "get_if_exists": True, "namespace": NAMESPACE}
        self.restarts: dict[str, int] = {}
        if _exists("herald-shard-0"):
            self.restarts["supervisor"] = 1  # a previous life started these pools
        placement = queue_placement(settings)  # decided once: a restarted shard keeps its options
        hosted = shard_hosts(settings.shards, settings.shards_per_process)
        #: The queue processes, each hosting a run of shards (``actors.queue``).
        self._queues = [
            QueueActor.options(  # type: ignore[attr-defined]
                name=host_name(shards.start, settings.shards_per_process),
                num_cpus=settings.shard_cpus, **owned, **placement,
            ).remote(list(shards), settings)  # type: ignore[attr-defined]
            for shards in hosted]
        self.shards = shard_clients(self._queues, hosted)
        #: Bounces and complaints by SMTP, with HERALD_BOUNCE_DOMAIN (actors/bounce_desk.py).
        self.bounces = BounceDesk(settings, self.shards)
        self._bouncing = asyncio.get_running_loop().create_task(self.bounces.start())
        # Only where limits are set: otherwise nothing would ever ask it (a process saved).
        self.limiter = RateLimiter.options(name=RATE_LIMITER_NAME, **owned).remote(  # type: ignore[attr-defined]
            settings.rate_limits, settings.recipient_limits,
        ) if settings.rate_limits or settings.recipient_limits else None
        self._owned = owned
        self.pools: dict[Channel, list[Any]] = {}
        self._sizers: dict[Channel, PoolSizer] = {}
        for channel in map(Channel, channels):
            size = settings.pools.get(channel.key, 1)
            if channel is not Channel.BROWSER:  # a gateway owns its users: that pool stays put
                self._sizers[channel] = PoolSizer(
                    size, settings.pool_max.get(channel.key, size),
                    grow_backlog=settings.pool_grow_backlog, idle_seconds=settings.pool_idle_seconds)
                while size < self._sizers[channel].maximum and _exists(actor_name(channel, size)):
                    size += 1  # a previous life grew this pool: take those actors over too
            self.pools[channel] = [self._channel_actor(channel, i) for i in range(size)]
        #: Member name → pid of each actor that has answered; the others are being placed.
        self._pids: dict[str, int] = {}
        #: Member name → (its first ping, when it was sent) for actors that have not answered yet.
        self._placing: dict[str, tuple[asyncio.Future[Any], float]] = {}
        self._sized_at = 0.0
        #: Actors a shrink removed, being drained in the background: name → (handle, drain).
        self._draining: dict[str, tuple[Any, asyncio.Task[None]]] = {}
        #: Health rounds done (``describe``: the loop goes on during a drain).
        self._rounds = 0
        # Async actors run __init__ on their event loop; a restarted Supervisor resumes checking.
        self._loop: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._health_loop())
        #: PostgreSQL: this deployment's claim to be the active one (``actors.deployment_lease``).
        self._lease = DeploymentLease(settings) if settings.database_url else None
        self._leasing = (asyncio.get_running_loop().create_task(self._lease.run())
                         if self._lease is not None else None)

    def _channel_actor(self, channel: Channel, index: int) -> Any:
        # HERALD_CHANNEL_CPUS each: on a cluster, actors that do not fit are demand the autoscaler
        # sees. Creating one never waits for it to be placed.
        return ChannelActor.options(  # type: ignore[attr-defined]
            name=actor_name(channel, index), num_cpus=self._settings.channel_cpus,
            **self._owned,
        ).remote(channel, index, self.shards, self._settings, self.limiter)

    async def _size_pools(self) -> None:
        """Grow a pool while its backlog per actor stays high, shrink it when idle (nothing
        waiting and nothing in flight); never waits for a drain. The backlog counts what the
        pool's actors leased and hold waiting for a provider connection (each leases up to
        ``HERALD_CHANNEL_CONCURRENCY``): out of the shards, but not being sent."""
        if not self._sizers or time.monotonic() < self._sized_at + SIZE_INTERVAL:
            return
        self._sized_at = time.monotonic()
        stats = await asyncio.gather(*(asyncio.wait_for(s.stats(), HEALTH_TIMEOUT)
                                       for s in self.shards), return_exceptions=True)
        backlog: dict[str, int] = {}
        for stat in stats:
            if isinstance(stat, BaseException):
                return  # a shard is restarting: decide next time, on every shard's figures
            for channel, states in stat.depth.items():
                backlog[channel] = backlog.get(channel, 0) + states.get("queued", 0) + \
                    states.get("retrying", 0)
        in_flight, waiting = await self._held_by_actors()
        for channel, count in waiting.items():
            backlog[channel.value] = backlog.get(channel.value, 0) + count
        for channel, sizer in self._sizers.items():
            actors = self.pools[channel]
            wanted = sizer.decide(len(actors), backlog.get(channel.value, 0), time.monotonic(),
                                  in_flight.get(channel, 1))
            while len(actors) < wanted and actor_name(channel, len(actors)) not in self._draining:
                log.info("growing a pool", extra={"channel": channel.key, "size": len(actors) + 1})
                actors.append(self._channel_actor(channel, len(actors)))
            while len(actors) > wanted:
                actor = actors.pop()
                name = f"{channel.key}-{len(actors)}"
                log.info("shrinking a pool", extra={"channel": channel.key, "size": len(actors)})
                # Forgotten: an actor grown again under this name is a new one, not a restart.
                placed = self._pids.pop(name, None) is not None
                self._forget_placing(name)
                # Out of the pool, so neither checked as hung nor replaced while it drains; in
                # the background, so the health checks go on meanwhile.
                key = actor_name(channel, len(actors))
                self._draining[key] = (actor, asyncio.get_running_loop().create_task(
                    self._drain_and_kill(key, actor, placed)))

    async def _held_by_actors(self) -> tuple[dict[Channel, int], dict[Channel, int]]:
        """Per pool, from its placed actors' own figures (one never placed has leased nothing):
        sends leased and not acked, and those waiting for a provider connection. A pool with an
        actor that did not answer is not known to be idle: it is left out of the first (the
        caller takes it for busy)."""
        asked = [(channel, h) for channel, actors in self.pools.items()
                 for i, h in enumerate(actors) if f"{channel.key}-{i}" in self._pids]
        answers = await asyncio.gather(*(asyncio.wait_for(ChannelClient(h).ping(), HEALTH_TIMEOUT)
                                         for _, h in asked), return_exceptions=True)
        counts, waiting = dict.fromkeys(self.pools, 0), dict.fromkeys(self.pools, 0)
        unknown: set[Channel] = set()
        for (channel, _), answer in zip(asked, answers, strict=True):
            if isinstance(answer, ChannelPing):
                counts[channel] += answer.sending
                waiting[channel] += answer.waiting
            else:
                unknown.add(channel)
        return {c: n for c, n in counts.items() if c not in unknown}, waiting

    async def _drain_and_kill(self, name: str, actor: Any, placed: bool) -> None:
        """Let an actor removed from its pool finish what it leased (up to one attempt's
        deadline and a margin), then kill it."""
        wait = drain_seconds(self._settings.attempt_timeout)
        try:
            if placed:  # one never placed holds no work
                with contextlib.suppress(Exception):  # drained or not, it goes
                    left = await asyncio.wait_for(ChannelClient(actor).drain(wait), wait + 10)
                    if left:
                        log.warning("%s still had %d sends after its drain", name, left)
            ray.kill(actor, no_restart=True)
        finally:
            self._draining.pop(name, None)

    def _members(self) -> list[tuple[str, str, Any]]:
        out = [("queue", f"shard-{s.index}", s.handle) for s in self.shards
               if s.index % self._settings.shards_per_process == 0]  # one per process
        for channel, actors in self.pools.items():
            out += [(channel.key, f"{channel.key}-{i}", h) for i, h in enumerate(actors)]
        return out

    def _placed_channel_actors(self) -> list[Any]:
        """The channel actors that have answered at least once (not those waiting for a node)."""
        return [h for pool, name, h in self._members() if pool != "queue" and name in self._pids]

    async def start(self) -> SupervisorView:
        """Wait until every actor answers once; start the health loop."""
        await self._check_all(timeout=120.0, wait_for_new=True)
        await self._bouncing  # a bounce port that is taken stops the start, naming the cause
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._health_loop())
        return await self.describe()

    async def pid(self) -> int:
        return os.getpid()

    async def shard_handles(self) -> list[ShardClient]:
        """The shards, for intake (``serve deploy`` and ``herald up`` build it with them)."""
        return self.shards

    @staticmethod
    def _ask(pool: str, handle: Any) -> Awaitable[int | ChannelPing]:
        # A queue process answers for all its shards (which one is asked does not matter).
        return ShardClient(handle, 0).pid() if pool == "queue" else ChannelClient(handle).ping()

    def _replace(self, pool: str, name: str, handle: Any, waited: float) -> None:
        log.warning("%s did not answer in %.0fs; replacing it", name, waited)
        ray.kill(handle, no_restart=False)
        self.restarts[pool] = self.restarts.get(pool, 0) + 1

    async def _check(self, pool: str, name: str, handle: Any, timeout: float) -> None:
        try:
            answer = await asyncio.wait_for(self._ask(pool, handle), timeout)
        except TimeoutError:
            self._replace(pool, name, handle, timeout)
            return
        except Exception:  # noqa: BLE001 - a dead actor is being restarted by Ray
            return
        self._record(pool, name, answer)

    def _check_placing(self, pool: str, name: str, handle: Any) -> None:
        """Look, without waiting, whether an actor that never answered has answered now."""
        if name not in self._placing:
            self._placing[name] = (asyncio.ensure_future(self._ask(pool, handle)), time.monotonic())
            return
        ping, since = self._placing[name]
        if not ping.done():
            if time.monotonic() - since > PLACEMENT_TIMEOUT:
                self._forget_placing(name)
                self._replace(pool, name, handle, PLACEMENT_TIMEOUT)
            return
        del self._placing[name]
        if ping.exception() is None:  # else it is being restarted: ask again next round
            self._record(pool, name, ping.result())

    def _forget_placing(self, name: str) -> None:
        ping, _ = self._placing.pop(name, (None, 0.0))
        if ping is not None:
            ping.cancel()

    def _record(self, pool: str, name: str, answer: int | ChannelPing) -> None:
        pid = answer if isinstance(answer, int) else answer.pid
        previous = self._pids.get(name)
        if previous is not None and previous != pid:
            log.warning("%s restarted (pid %s → %s)", name, previous, pid)
            self.restarts[pool] = self.restarts.get(pool, 0) + 1
        self._pids[name] = pid

    async def _check_all(self, timeout: float, wait_for_new: bool = False) -> None:
        """Check every actor; one that never answered is waited for only if ``wait_for_new``."""
        checks = []
        for pool, name, handle in self._members():
            if name in self._pids or wait_for_new:
                checks.append(self._check(pool, name, handle, timeout))
            else:
                self._check_placing(pool, name, handle)
        await asyncio.gather(*checks)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            try:
                await self._check_all(HEALTH_TIMEOUT)
                self._rounds += 1
                await self._size_pools()
            except Exception:
                log.exception("health check failed")

    async def describe(self) -> SupervisorView:
        return SupervisorView(dict(self._pids), dict(self.restarts),
                              {c.key: len(a) for c, a in self.pools.items()},
                              sorted(self._draining), self._rounds)

    async def channel_stats(self) -> list[ChannelPing]:
        """The figures of each channel actor that answers (``/metrics``, the admin overview): not
        of one still waiting to be placed, nor of one that hangs."""
        calls = [asyncio.wait_for(ChannelClient(h).ping(), HEALTH_TIMEOUT)
                 for h in self._placed_channel_actors()]
        results = await asyncio.gather(*calls, return_exceptions=True)
        return [r for r in results if isinstance(r, ChannelPing)]

    async def shutdown(self) -> None:
        """Kill every actor this Supervisor runs (they are detached: nothing else will)."""
        if self._loop is not None:
            self._loop.cancel()
        await self.bounces.close()
        closing = asyncio.gather(*(s.close() for s in self.shards), return_exceptions=True)
        with contextlib.suppress(TimeoutError):  # a stuck shard must not keep the rest alive
            await asyncio.wait_for(closing, 10)
        for _, _, handle in self._members():
            ray.kill(handle, no_restart=True)
        if self._lease is not None and self._leasing is not None:
            self._leasing.cancel()
            with contextlib.suppress(TimeoutError):  # a database not answering: it expires
                await asyncio.wait_for(asyncio.to_thread(self._lease.release), 5)
        for handle, draining in list(self._draining.values()):
            draining.cancel()
            ray.kill(handle, no_restart=True)
        if self.limiter is not None:
            ray.kill(self.limiter, no_restart=True)

    async def drain(self, timeout: float = 30.0) -> int:
        """Stop every channel actor's pulling and let in-flight work finish and be acked."""
        if self._loop is not None:
            self._loop.cancel()
        # One never placed holds no work, and its drain would wait for its node.
        calls = [ChannelClient(h).drain(timeout) for h in self._placed_channel_actors()]
        left = await asyncio.gather(*calls, return_exceptions=True)
        return sum(x for x in left if isinstance(x, int))
