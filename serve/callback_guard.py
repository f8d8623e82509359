"""Intake's check of ``requester.callback_url``: resolve its host, then apply the callback policy.

The rule itself is ``herald.callback_policy`` (pure); this adds the DNS lookup, with a short
timeout, a small TTL cache (a batch of a thousand callbacks to one host asks once) and one
lookup in flight per host. A name that does not resolve is refused (422, like any other bad
target); a lookup that does not answer in time is ``Unavailable`` (503: try again, it may be
our DNS). The webhook provider checks again at send time: DNS can change in between.

Tenants do not wait on each other: each has ``TENANT_LOOKUPS`` lookups of its own at once
(per intake replica), a slot is held until its lookup really ends (a hung system resolver
keeps its thread), and the timeout counts from the start of the check, the wait for a slot
included. A tenant whose callback hosts hang gets 503s for its own checks only.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

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


#: Lookups one tenant may have in flight at once (per intake replica).
TENANT_LOOKUPS = 4
#: A lookup still running after this long gives its slot back (the system resolver gives up
#: well before: resolv.conf's timeout × attempts × servers).
LOOKUP_CAP_SECONDS = 30.0
#: Threads for the system resolver, apart from the loop's default executor (which other work
#: of the replica shares): room for this many lookups hung at once, over all tenants.
DNS_THREADS = 64


@functools.cache
def _dns_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=DNS_THREADS, thread_name_prefix="herald-dns")


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The system resolver, off the event loop, in threads of its own."""
    infos = await asyncio.get_running_loop().run_in_executor(
        _dns_threads(), functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM))
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
        ttl: float = 30.0, max_hosts: int = 4096, tenant_lookups: int = TENANT_LOOKUPS,
        lookup_cap: float = LOOKUP_CAP_SECONDS, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow = allow
        self._resolve = resolve
        self._timeout = timeout
        self._ttl = ttl
        self._max_hosts = max_hosts
        self._tenant_lookups = tenant_lookups
        self._lookup_cap = lookup_cap
        self._clock = clock
        self._slots: dict[str, asyncio.Semaphore] = {}  # tenant → its lookups in flight
        #: host → (when the answer expires, the addresses; empty = does not resolve)
        self._cache: dict[str, tuple[float, list[IPAddress]]] = {}
        self._pending: dict[str, asyncio.Task[list[IPAddress]]] = {}

    async def check(self, url: str, tenant: str = "") -> None:
        """Return if Herald may call ``url``; else raise ValidationError(field=requester.callback_url)
        or Unavailable (``tenant``'s lookup did not answer in time)."""
        target = parse_callback_url(url)
        addresses: Sequence[IPAddress] = []
        if target.address is None and not self.allow.allows_host(target.host):
            addresses = await self._addresses(tenant, target.host, target.port)
        check_callback_url(url, addresses, self.allow)

    async def check_notification(self, notification: Notification) -> None:
        url = callback_url_of(notification)
        if url is not None:
            await self.check(url, notification.tenant)

    async def refusals(self, notifications: Sequence[Notification]) -> dict[int, HeraldError]:
        """Check every callback URL of a batch at once; index → error for those refused."""
        answers = await asyncio.gather(
            *(self.check_notification(n) for n in notifications), return_exceptions=True)
        refused: dict[int, HeraldError] = {}
        for index, answer in enumerate(answers):
            if isinstance(answer, HeraldError):
                refused[index] = answer
            elif isinstance(answer, BaseException):
                raise answer
        return refused

    async def _addresses(self, tenant: str, host: str, port: int) -> list[IPAddress]:
        cached = self._cache.get(host)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        try:
            async with asyncio.timeout(self._timeout):  # the wait for a slot included
                task = self._pending.get(host) or await self._start(tenant, host, port)
                # Shielded: one caller giving up must not cancel the others' lookup.
                return await asyncio.shield(task)
        except TimeoutError:
            raise Unavailable("the callback_url host could not be resolved in time; "
                              "try again shortly") from None

    async def _start(self, tenant: str, host: str, port: int) -> asyncio.Task[list[IPAddress]]:
        """A lookup of ``host`` on one of ``tenant``'s slots, once one is free; the slot comes
        back when the lookup ends, not when its callers stop waiting."""
        slots = self._slots.setdefault(tenant, asyncio.Semaphore(self._tenant_lookups))
        await slots.acquire()
        task = self._pending.get(host)  # started by another caller meanwhile
        if task is not None:
            slots.release()
            return task
        task = self._pending[host] = asyncio.ensure_future(self._lookup(host, port))

        def done(finished: asyncio.Task[list[IPAddress]]) -> None:
            slots.release()
            self._pending.pop(host, None)
            if not finished.cancelled():
                finished.exception()  # seen: its callers may all have stopped waiting

        task.add_done_callback(done)
        return task

    async def _lookup(self, host: str, port: int) -> list[IPAddress]:
        try:
            async with asyncio.timeout(self._lookup_cap):
                addresses = list(await self._resolve(host, port))
        except TimeoutError:  # before OSError, which it is: "did not answer" is not "no such name"
            raise Unavailable("the callback_url host could not be resolved in time") from None
        except (OSError, UnicodeError, ValueError):
            addresses = []  # gaierror (no such name), or a name the resolver cannot take
        self._cache.pop(host, None)
        if len(self._cache) >= self._max_hosts:  # the oldest answer makes room
            del self._cache[next(iter(self._cache))]
        self._cache[host] = (self._clock() + self._ttl, addresses)
        return addresses
