"""The Supervisor's actors as Ray sees them: how each is created and placed (the shards, the
channel actors, the rate limiter), their handles, and the calls the Supervisor makes on them.

Every one is detached and named (``herald.actor_names``): they outlive a Supervisor crash, and a
restarted Supervisor (``get_if_exists``) takes the running ones over instead of starting a
second set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import ray

from actors.channels import ChannelActor
from actors.clients import ChannelClient, ShardClient
from actors.queue import QueueActor
from actors.ratelimiter import RATE_LIMITER_NAME, RateLimiter
from herald.actor_names import NAMESPACE
from herald.config import Settings
from herald.pool_views import ChannelPing
from herald.sharding import shard_hosts
from herald.supervision import HEALTH_TIMEOUT
from herald.supervision_events import Answered, Drained, Failed, Measured, MemberId, TimedOut

log = logging.getLogger("herald.supervisor")
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


def running(name: str) -> bool:
    """Whether an actor of that name is alive in Herald's namespace."""
    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True


class Members:
    """The handles of the Supervisor's actors, by member."""

    #: In namespace herald whoever created the Supervisor (herald up, or Serve's build task).
    OWNED: dict[str, Any] = {"lifetime": "detached", "get_if_exists": True, "namespace": NAMESPACE}

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Only where limits are set: otherwise nothing would ever ask it (a process saved).
        self.limiter = RateLimiter.options(name=RATE_LIMITER_NAME, **self.OWNED).remote(  # type: ignore[attr-defined]
            settings.rate_limits, settings.recipient_limits,
        ) if settings.rate_limits or settings.recipient_limits else None
        self._placement = queue_placement(settings)  # decided once: a restarted shard keeps it
        #: A queue process (by its first shard) → the shards it hosts.
        self._hosted = {r.start: r for r in shard_hosts(settings.shards, settings.shards_per_process)}
        self.handles: dict[MemberId, Any] = {}
        #: The shards in order (their processes are started first, and never again).
        self.shards: list[ShardClient] = []

    def start(self, member: MemberId) -> None:
        """Create the member's actor (or find it running). Never waits for it to be placed: on a
        cluster, actors that do not fit are demand the autoscaler sees."""
        settings, named = self._settings, {"name": member.actor, **self.OWNED}
        if member.channel is None:
            hosted = self._hosted[member.index]
            handle = QueueActor.options(  # type: ignore[attr-defined]
                num_cpus=settings.shard_cpus, **named, **self._placement,
            ).remote(list(hosted), settings)
            self.shards += [ShardClient(handle, index) for index in hosted]
        else:
            handle = ChannelActor.options(  # type: ignore[attr-defined]
                num_cpus=settings.channel_cpus, **named,
            ).remote(member.channel, member.index, self.shards, settings, self.limiter)
        self.handles[member] = handle

    async def ping(self, member: MemberId, timeout: float | None) -> Answered | Failed | TimedOut:
        """Ask for its pid, waiting up to ``timeout`` (None: as long as it takes). Asking also
        wakes a channel actor Ray restarted, so that it starts pulling."""
        try:
            return Answered(member, await asyncio.wait_for(self._pid(member), timeout))
        except TimeoutError:
            return TimedOut(member, timeout or 0.0)
        except Exception:  # noqa: BLE001 - a dead actor is being restarted by Ray
            return Failed(member)

    async def _pid(self, member: MemberId) -> int:
        handle = self.handles[member]
        if member.channel is None:  # a queue process answers for every shard it hosts
            return await ShardClient(handle, member.index).pid()
        return (await ChannelClient(handle).ping()).pid

    async def measure(self, members: tuple[MemberId, ...]) -> Measured:
        """The shards' figures and those of ``members`` (channel actors), to size the pools."""
        stats = await asyncio.gather(*(asyncio.wait_for(s.stats(), HEALTH_TIMEOUT)
                                       for s in self.shards), return_exceptions=True)
        if any(isinstance(s, BaseException) for s in stats):
            return Measured(None, {})  # a shard is restarting: decide on every shard's figures
        pings = await self.pings(list(members))
        return Measured([s for s in stats if not isinstance(s, BaseException)],
                        {m: p if isinstance(p, ChannelPing) else None
                         for m, p in zip(members, pings, strict=True)})

    async def pings(self, members: list[MemberId]) -> list[ChannelPing | BaseException]:
        """Each channel actor's ping, or what went wrong (not answering within HEALTH_TIMEOUT)."""
        calls = [asyncio.wait_for(ChannelClient(self.handles[m]).ping(), HEALTH_TIMEOUT)
                 for m in members]
        return await asyncio.gather(*calls, return_exceptions=True)

    async def drain(self, member: MemberId, seconds: float) -> Drained:
        """Let a channel actor finish what it leased (for up to ``seconds``); drained or not,
        it is killed next."""
        with contextlib.suppress(Exception):
            call = ChannelClient(self.handles[member]).drain(seconds)
            left = await asyncio.wait_for(call, seconds + 10)
            if left:
                log.warning("%s still had %d sends after its drain", member.actor, left)
        return Drained(member)
