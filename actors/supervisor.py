"""Supervisor: a named, detached actor that owns the shards and channel pools and keeps them alive.

It decides nothing itself: ``herald.supervision`` says which actors to start, ping, replace,
drain and kill (and why); this actor carries the actions out on the actors' handles
(``actors.members``) and tells the state machine what came of them. It also runs the bounce desk
(``HERALD_BOUNCE_DOMAIN``) and, with PostgreSQL, the deployment lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable

import ray

from actors.bounce_desk import BounceDesk
from actors.clients import ChannelClient, ShardClient
from actors.deployment_lease import DeploymentLease
from actors.members import Members, running
from herald import supervision_events as sv
from herald.channels import Channel
from herald.config import Settings
from herald.pool_views import ChannelPing, SupervisorView
from herald.supervision import START_TIMEOUT, plan

log = logging.getLogger("herald.supervisor")
HEALTH_INTERVAL = 1.0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=100)  # type: ignore[call-overload]
class Supervisor:
    def __init__(self, settings: Settings, channels: list[Channel]) -> None:
        self._machine = plan(settings, map(Channel, channels), running)
        self._members = Members(settings)
        for start in self._machine.launch():  # the shards first: the channel actors get them
            self._members.start(start.member)
        self.shards = self._members.shards
        #: Bounces and complaints by SMTP, with HERALD_BOUNCE_DOMAIN (actors/bounce_desk.py).
        self.bounces = BounceDesk(settings, self.shards)
        loop = asyncio.get_running_loop()  # async actors run __init__ on their event loop
        self._bouncing = loop.create_task(self.bounces.start())
        #: Each member's first ping left running (``Watch``) or its drain: dropped when it goes.
        self._tasks: dict[sv.MemberId, asyncio.Task[None]] = {}
        # A restarted Supervisor resumes checking at once.
        self._loop: asyncio.Task[None] | None = loop.create_task(self._health_loop())
        #: PostgreSQL: this deployment's claim to be the active one (``actors.deployment_lease``).
        self._lease = DeploymentLease(settings) if settings.database_url else None
        self._leasing = loop.create_task(self._lease.run()) if self._lease is not None else None

    async def _observe(self, event: sv.Event) -> None:
        actions = self._machine.observe(event, time.monotonic())
        await asyncio.gather(*(self._carry_out(action) for action in actions))

    async def _carry_out(self, action: sv.Action) -> None:
        members = self._members
        match action:
            case sv.Start(member):
                members.start(member)
            case sv.Ping(member, timeout):
                await self._observe(await members.ping(member, timeout))
            case sv.Watch(member):
                self._in_background(member, members.ping(member, None))
            case sv.Drain(member, seconds):
                self._in_background(member, members.drain(member, seconds))
            case sv.Replace(member):
                self._drop_task(member)
                ray.kill(members.handles[member], no_restart=False)
            case sv.Measure(asked):
                await self._observe(await members.measure(asked))
            case sv.Kill(member):
                self._drop_task(member)
                ray.kill(members.handles.pop(member), no_restart=True)

    def _in_background(self, member: sv.MemberId, call: Awaitable[sv.Event]) -> None:
        """Neither the health round nor the pool sizing waits for it: its event comes later."""
        async def then_observe() -> None:
            event = await call
            self._tasks.pop(member, None)
            await self._observe(event)
        self._tasks[member] = asyncio.get_running_loop().create_task(then_observe())

    def _drop_task(self, member: sv.MemberId) -> None:
        task = self._tasks.pop(member, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            try:
                await self._observe(sv.CheckRound())
                await self._observe(sv.RoundDone())
            except Exception:
                log.exception("health check failed")

    async def start(self) -> SupervisorView:
        """Wait until every actor answers once; start the health loop."""
        await self._observe(sv.CheckRound(wait=START_TIMEOUT))
        await self._bouncing  # a bounce port that is taken stops the start, naming the cause
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._health_loop())
        return await self.describe()

    async def pid(self) -> int:
        return os.getpid()

    async def shard_handles(self) -> list[ShardClient]:
        """The shards, for intake (``serve deploy`` and ``herald up`` build it with them)."""
        return self.shards

    async def describe(self) -> SupervisorView:
        return self._machine.view()

    async def channel_stats(self) -> list[ChannelPing]:
        """The figures of each channel actor that answers (``/metrics``, the admin overview): not
        of one still waiting to be placed, nor of one that hangs."""
        pings = await self._members.pings(self._machine.ready_channel_members())
        return [p for p in pings if isinstance(p, ChannelPing)]

    async def shutdown(self) -> None:
        """Kill every actor this Supervisor runs (they are detached: nothing else will)."""
        if self._loop is not None:
            self._loop.cancel()
        await self.bounces.close()
        closing = asyncio.gather(*(s.close() for s in self.shards), return_exceptions=True)
        with contextlib.suppress(TimeoutError):  # a stuck shard must not keep the rest alive
            await asyncio.wait_for(closing, 10)
        await self._observe(sv.Shutdown())
        if self._lease is not None and self._leasing is not None:
            self._leasing.cancel()
            with contextlib.suppress(TimeoutError):  # a database not answering: it expires
                await asyncio.wait_for(asyncio.to_thread(self._lease.release), 5)
        if self._members.limiter is not None:
            ray.kill(self._members.limiter, no_restart=True)

    async def drain(self, timeout: float = 30.0) -> int:
        """Stop every channel actor's pulling and let in-flight work finish and be acked."""
        if self._loop is not None:
            self._loop.cancel()
        # One never placed holds no work, and its drain would wait for its node.
        calls = [ChannelClient(self._members.handles[m]).drain(timeout)
                 for m in self._machine.ready_channel_members()]
        left = await asyncio.gather(*calls, return_exceptions=True)
        return sum(x for x in left if isinstance(x, int))
