"""Intake's check of ``requester.callback_url``: resolve its host, then apply the callback policy.

The rule itself is ``herald.callback_policy`` (pure); this adds the DNS lookup, with a short
timeout, a small TTL cache (a batch of a thousand callbacks to one host asks once) and one
lookup in flight per host. A name that does not resolve is refused (422, like any other bad
target); a lookup that times out is ``Unavailable`` (503: try again, it may be our DNS).
The webhook provider checks again at send time: DNS can change in between.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Sequence

from herald.callback_policy import (
    CallbackAllow,
    IPAddress,
    addresses_of,
    check_callback_url,
    parse_callback_url,
)
from herald.errors import HeraldError, Unavailable
from herald.notification import Notification

#: ``(host, port)`` → its addresses; raises OSError when the name does not resolve.
Resolve = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The system resolver, off the event loop (``loop.getaddrinfo`` runs it in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return addresses_of(infos)


def callback_url_of(notification: Notification) -> str | None:
    """The URL the queue will call for this notification's final states, if any."""
    requester = notification.payload.get("requester") or {}
    url = requester.get("callback_url") if isinstance(requester, dict) else None
    return str(url) if url else None


class CallbackGuard:
    """Refuses callback URLs that point where Herald must not send (see herald.callback_policy)."""

    def __init__(
        self, allow: CallbackAllow, resolve: Resolve = resolve_host, timeout: float = 2.0,
        ttl: float = 30.0, max_hosts: int = 4096, concurrency: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow = allow
        self._resolve = resolve
        self._timeout = timeout
        self._ttl = ttl
        self._max_hosts = max_hosts
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        #: host → (when the answer expires, the addresses; empty = does not resolve)
        self._cache: dict[str, tuple[float, list[IPAddress]]] = {}
        self._pending: dict[str, asyncio.Task[list[IPAddress]]] = {}

    async def check(self, url: str) -> None:
        """Return if Herald may call ``url``; else raise ValidationError(field=requester.callback_url)
        or Unavailable (the lookup timed out)."""
        target = parse_callback_url(url)
        addresses: Sequence[IPAddress] = []
        if target.address is None and not self.allow.allows_host(target.host):
            addresses = await self._addresses(target.host, target.port)
        check_callback_url(url, addresses, self.allow)

    async def check_notification(self, notification: Notification) -> None:
        url = callback_url_of(notification)
        if url is not None:
            await self.check(url)

    async def refusals(self, notifications: Sequence[Notification]) -> dict[int, HeraldError]:
        """Check a batch concurrently: index in ``notifications`` → why it is refused."""
        answers = await asyncio.gather(
            *(self.check_notification(n) for n in notifications), return_exceptions=True)
        refused: dict[int, HeraldError] = {}
        for index, answer in enumerate(answers):
            if isinstance(answer, HeraldError):
                refused[index] = answer
            elif isinstance(answer, BaseException):
                raise answer
        return refused

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        cached = self._cache.get(host)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        task = self._pending.get(host)
        if task is None:
            task = self._pending[host] = asyncio.ensure_future(self._lookup(host, port))
            task.add_done_callback(lambda _: self._pending.pop(host, None))
        # Shielded: one caller giving up (a client gone) must not cancel the others' lookup.
        return await asyncio.shield(task)

    async def _lookup(self, host: str, port: int) -> list[IPAddress]:
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout):
                    addresses = list(await self._resolve(host, port))
            except TimeoutError:
                raise Unavailable("the callback_url host could not be resolved in time; "
                                  "try again shortly") from None
            except (OSError, UnicodeError, ValueError):
                addresses = []  # gaierror (no such name), or a name the resolver cannot take
        self._cache.pop(host, None)
        if len(self._cache) >= self._max_hosts:  # the oldest answer makes room
            del self._cache[next(iter(self._cache))]
        self._cache[host] = (self._clock() + self._ttl, addresses)
        return addresses

