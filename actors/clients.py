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
    """One queue shard (``actors.queue.QueueActor``)."""

    def __init__(self, handle: Any, index: int) -> None:
        self.handle = handle
        self.index = index

    def __repr__(self) -> str:
        return f"ShardClient({self.index})"

    def pid(self) -> Call[int]:
        return Call(self.handle.pid.remote())

    def health(self) -> Call[ShardHealth]:
        return Call(self.handle.health.remote())

    def close(self) -> Call[None]:
        return Call(self.handle.close.remote())

    def ready(self) -> Call[bool]:
        return Call(self.handle.ready.remote())

    def enqueue(self, notifications: list[Notification]) -> Call[list[Accepted | QueueFull]]:
        return Call(self.handle.enqueue.remote(notifications))

    def exchange(self, request: Exchange) -> Call[ExchangeAnswer]:
        return Call(self.handle.exchange.remote(request))

    def ack(self, outcomes: list[Outcome]) -> Call[int]:
        return Call(self.handle.ack.remote(outcomes))

    def claimed(self, keys: list[tuple[str, str]]) -> Call[dict[tuple[str, str], str]]:
        return Call(self.handle.claimed.remote(keys))

    def claim(self, entries: list[tuple[str, str, str]]) -> Call[list[str]]:
        return Call(self.handle.claim.remote(entries))

    def recipient(self, tenant: str, uid: str) -> Call[Recipient | None]:
        return Call(self.handle.recipient.remote(tenant, uid))

    def set_recipient(self, tenant: str, uid: str, recipient: Recipient | None) -> Call[None]:
        return Call(self.handle.set_recipient.remote(tenant, uid, recipient))

    def feed(self, query: FeedQuery) -> Call[FeedPage]:
        return Call(self.handle.feed.remote(query))

    def mark_read(self, tenant: str, uid: str, marks: ReadMarks) -> Call[ReadAnswer]:
        return Call(self.handle.mark_read.remote(tenant, uid, marks))

    def bounce(self, report: BounceReport) -> Call[tuple[str, Suppression] | None]:
        return Call(self.handle.bounce.remote(report))

    def suppressions(self, tenant: str) -> Call[list[Suppression]]:
        return Call(self.handle.suppressions.remote(tenant))

    def suppress(self, tenant: str, entry: Suppression | None, contact: str = "",
                 sender: str | None = None) -> Call[int]:
        return Call(self.handle.suppress.remote(tenant, entry, contact, sender))

    def unpark(self, tenant: str, uid: str) -> Call[list[str]]:
        return Call(self.handle.unpark.remote(tenant, uid))

    def receipts(self, outcomes: list[Outcome]) -> Call[list[bool]]:
        return Call(self.handle.receipts.remote(outcomes))

    def get(self, tag: str, tenant: str, wait: float = 0.0) -> Call[dict[str, Any]]:
        return Call(self.handle.get.remote(tag, tenant, wait))

    def cancel(self, tag: str, tenant: str) -> Call[dict[str, Any]]:
        return Call(self.handle.cancel.remote(tag, tenant))

    def revive(self, tag: str, tenant: str) -> Call[dict[str, Any]]:
        return Call(self.handle.revive.remote(tag, tenant))

    def stats(self, tenant: str | None = None) -> Call[ShardStats]:
        return Call(self.handle.stats.remote(tenant))

    def admin_stats(self) -> Call[ShardFigures]:
        return Call(self.handle.admin_stats.remote())

    def admin_search(self, query: SearchQuery) -> Call[SearchPage]:
        return Call(self.handle.admin_search.remote(query))

    def admin_get(self, tag: str) -> Call[dict[str, Any]]:
        return Call(self.handle.admin_get.remote(tag))

    def admin_retry(self, tags: list[str]) -> Call[list[dict[str, Any] | HeraldError]]:
        return Call(self.handle.admin_retry.remote(tags))

    def admin_cancel(self, tags: list[str]) -> Call[list[dict[str, Any] | HeraldError]]:
        return Call(self.handle.admin_cancel.remote(tags))

    def pause(self, channel: Channel) -> Call[dict[str, float]]:
        return Call(self.handle.pause.remote(channel))

    def resume(self, channel: Channel) -> Call[dict[str, float]]:
        return Call(self.handle.resume.remote(channel))

    def set_preference(self, tenant: str, uid: str, category: str, channel_key: str,
                       on: bool) -> Call[Recipient]:
        return Call(self.handle.set_preference.remote(tenant, uid, category, channel_key, on))


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


def shard_clients(handles: list[Any]) -> list[ShardClient]:
    """A client for each shard handle, in shard order."""
    return [ShardClient(handle, i) for i, handle in enumerate(handles)]
