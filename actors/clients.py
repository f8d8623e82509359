"""Typed clients of Herald's actors: the only way serve/, launcher/ and other actors call them.

A Ray handle is untyped (``handle.any_name.remote(anything)`` type-checks and fails at run
time); each client here names the actor's methods once, with the core's typed values in and
out, so mypy checks every call site and ``tests/unit/test_clients.py`` checks each client
method against the actor method it calls (same name, same parameters). Clients pickle (they
hold only a handle), so they cross Ray like handles do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, TypeVar, cast

import ray
from ray.exceptions import RayTaskError

from herald.bounce_reports import BounceReport
from herald.channels import Channel
from herald.errors import HeraldError, QueueFull
from herald.exchange import Exchange, ExchangeAnswer
from herald.inbox import FeedPage, FeedQuery, ReadAnswer, ReadMarks
from herald.metrics import ShardStats
from herald.notification import Accepted, Notification
from herald.outcome import Outcome
from herald.overview import ShardFigures
from herald.pool_views import ChannelPing, SupervisorView
from herald.recipients import Recipient
from herald.search import SearchPage, SearchQuery
from herald.shard_health import ShardHealth
from herald.suppressions import Suppression

__all__ = ["Call", "ChannelClient", "ShardClient", "SupervisorClient", "shard_clients"]

T = TypeVar("T")


class Call(Generic[T]):
    """One call on its way: awaited (``await client.stats()``) in async code, ``get`` (with a
    timeout) in the launcher's synchronous code; typed either way. A core error the actor
    raised (``NotFound``, ``QueueFull``, ``Unavailable``…) is raised here as itself."""

    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref  # Ray's ObjectRef of the answer

    def __await__(self) -> Generator[Any, None, T]:
        return self._answer().__await__()

    async def _answer(self) -> T:
        try:
            return cast(T, await self.ref)
        except RayTaskError as exc:
            raise _core_error(exc) from None

    def get(self, timeout: float | None = None) -> T:
        try:
            return cast(T, ray.get(self.ref, timeout=timeout))
        except RayTaskError as exc:
            raise _core_error(exc) from None


def _core_error(exc: RayTaskError) -> BaseException:
    """A core error (``NotFound``, ``Unavailable``…) the actor raised, as itself; anything else
    as Ray carried it."""
    return exc.cause if isinstance(exc.cause, HeraldError) else exc


class ShardClient:
    """One queue shard: ``index`` of those its ``handle`` hosts (``actors.queue.QueueActor``)."""

    def __init__(self, handle: Any, index: int) -> None:
        self.handle = handle
        self.index = index

    def __repr__(self) -> str:
        return f"ShardClient({self.index})"

    def pid(self) -> Call[int]:
        return Call(self.handle.pid.remote(self.index))

    def health(self) -> Call[ShardHealth]:
        return Call(self.handle.health.remote(self.index))

    def close(self) -> Call[None]:
        return Call(self.handle.close.remote(self.index))

    def ready(self) -> Call[bool]:
        return Call(self.handle.ready.remote(self.index))

    def enqueue(self, notifications: list[Notification]) -> Call[list[Accepted | QueueFull]]:
        return Call(self.handle.enqueue.remote(self.index, notifications))

    def exchange(self, request: Exchange) -> Call[ExchangeAnswer]:
        return Call(self.handle.exchange.remote(self.index, request))

    def ack(self, outcomes: list[Outcome]) -> Call[int]:
        return Call(self.handle.ack.remote(self.index, outcomes))

    def claimed(self, keys: list[tuple[str, str]]) -> Call[dict[tuple[str, str], str]]:
        return Call(self.handle.claimed.remote(self.index, keys))

    def claim(self, entries: list[tuple[str, str, str]]) -> Call[list[str]]:
        return Call(self.handle.claim.remote(self.index, entries))

    def recipient(self, tenant: str, uid: str) -> Call[Recipient | None]:
        return Call(self.handle.recipient.remote(self.index, tenant, uid))

    def set_recipient(self, tenant: str, uid: str, recipient: Recipient | None) -> Call[None]:
        return Call(self.handle.set_recipient.remote(self.index, tenant, uid, recipient))

    def feed(self, query: FeedQuery) -> Call[FeedPage]:
        return Call(self.handle.feed.remote(self.index, query))

    def mark_read(self, tenant: str, uid: str, marks: ReadMarks) -> Call[ReadAnswer]:
        return Call(self.handle.mark_read.remote(self.index, tenant, uid, marks))

    def bounce(self, report: BounceReport) -> Call[tuple[str, Suppression] | None]:
        return Call(self.handle.bounce.remote(self.index, report))

    def suppressions(self, tenant: str) -> Call[list[Suppression]]:
        return Call(self.handle.suppressions.remote(self.index, tenant))

    def suppress(self, tenant: str, entry: Suppression | None, contact: str = "",
                 sender: str | None = None) -> Call[int]:
        return Call(self.handle.suppress.remote(self.index, tenant, entry, contact, sender))

    def unpark(self, tenant: str, uid: str) -> Call[list[str]]:
        return Call(self.handle.unpark.remote(self.index, tenant, uid))

    def receipts(self, outcomes: list[Outcome]) -> Call[list[bool]]:
        return Call(self.handle.receipts.remote(self.index, outcomes))

    def get(self, tag: str, tenant: str, wait: float = 0.0) -> Call[dict[str, Any]]:
        return Call(self.handle.get.remote(self.index, tag, tenant, wait))

    def cancel(self, tag: str, tenant: str) -> Call[dict[str, Any]]:
        return Call(self.handle.cancel.remote(self.index, tag, tenant))

    def revive(self, tag: str, tenant: str) -> Call[dict[str, Any]]:
        return Call(self.handle.revive.remote(self.index, tag, tenant))

    def stats(self, tenant: str | None = None) -> Call[ShardStats]:
        return Call(self.handle.stats.remote(self.index, tenant))

    def admin_stats(self) -> Call[ShardFigures]:
        return Call(self.handle.admin_stats.remote(self.index))

    def admin_search(self, query: SearchQuery) -> Call[SearchPage]:
        return Call(self.handle.admin_search.remote(self.index, query))

    def admin_get(self, tag: str) -> Call[dict[str, Any]]:
        return Call(self.handle.admin_get.remote(self.index, tag))

    def admin_retry(self, tags: list[str]) -> Call[list[dict[str, Any] | HeraldError]]:
        return Call(self.handle.admin_retry.remote(self.index, tags))

    def admin_cancel(self, tags: list[str]) -> Call[list[dict[str, Any] | HeraldError]]:
        return Call(self.handle.admin_cancel.remote(self.index, tags))

    def pause(self, channel: Channel) -> Call[dict[str, float]]:
        return Call(self.handle.pause.remote(self.index, channel))

    def resume(self, channel: Channel) -> Call[dict[str, float]]:
        return Call(self.handle.resume.remote(self.index, channel))

    def set_preference(self, tenant: str, uid: str, category: str, channel_key: str,
                       on: bool) -> Call[Recipient]:
        return Call(self.handle.set_preference.remote(self.index, tenant, uid, category, channel_key, on))


class ChannelClient:
    """One channel actor (``actors.channels.ChannelActor``)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def ping(self) -> Call[ChannelPing]:
        return Call(self.handle.ping.remote())

    def drain(self, timeout: float = 30.0) -> Call[int]:
        return Call(self.handle.drain.remote(timeout))


class SupervisorClient:
    """The Supervisor (``actors.supervisor.Supervisor``), from the launcher and intake."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def start(self) -> Call[SupervisorView]:
        return Call(self.handle.start.remote())

    def pid(self) -> Call[int]:
        return Call(self.handle.pid.remote())

    def shard_handles(self) -> Call[list[ShardClient]]:
        return Call(self.handle.shard_handles.remote())

    def describe(self) -> Call[SupervisorView]:
        return Call(self.handle.describe.remote())

    def channel_stats(self) -> Call[list[ChannelPing]]:
        return Call(self.handle.channel_stats.remote())

    def shutdown(self) -> Call[None]:
        return Call(self.handle.shutdown.remote())

    def drain(self, timeout: float = 30.0) -> Call[int]:
        return Call(self.handle.drain.remote(timeout))


async def on_every_shard(shards: Sequence[ShardClient],
                         ask: Callable[[ShardClient], Call[T]]) -> list[T]:
    """Ask every shard at once; their answers in shard order. Waits for all of them, then raises
    the first failure (what every shard keeps, like suppressions, changes on all or is retried)."""
    answers = await asyncio.gather(*(ask(shard) for shard in shards), return_exceptions=True)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return cast(list[T], answers)


def shard_clients(handles: list[Any], hosted: Sequence[range] | None = None) -> list[ShardClient]:
    """A client for each shard, in shard order: ``hosted[n]`` are the shards ``handles[n]``
    hosts (``herald.sharding.shard_hosts``; None: one each)."""
    ranges = hosted if hosted is not None else [range(i, i + 1) for i in range(len(handles))]
    return [ShardClient(handle, i) for handle, shards in zip(handles, ranges, strict=True)
            for i in shards]
