"""One intake replica's admin console: who may use it, its live figures, its calls to shards.

``serve/admin.py`` holds the routes and says how they reach this object. Credentials are
checked here (``AdminConsole.authorize``; the tokens are ``herald.admin_session``'s). The live
figures come from a sampler task, started by the first admin request and stopped after
``IDLE_SECONDS`` without one, which asks the shards and the Supervisor every ``SAMPLE_SECONDS``;
rates, the charts' history and the notable events are ``herald.overview``'s, and a ``Feed``
wakes the ``/v1/admin/stream`` subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
from fastapi import Request

from actors.admin_sessions import SessionRevocations
from actors.clients import Call, ShardClient, on_every_shard
from herald.admin_session import Forbidden, check_csrf, is_admin_key, verify_session
from herald.errors import AuthError, HeraldError, NotFound
from herald.overview import RateTracker, ShardFigures, build_overview, notable
from herald.pool_views import SupervisorView
from herald.sharding import shard_of_tag
from serve.answers import as_herald_error, item_error
from serve.auth import client_of

log = logging.getLogger("herald.admin")
COOKIE = "herald_admin"
CSRF_HEADER = "x-csrf-token"
SAMPLE_SECONDS = 1.5
IDLE_SECONDS = 600.0
#: A stream ends after this (the page's EventSource reconnects, and is authenticated again).
STREAM_SECONDS = 300.0
KEEPALIVE_SECONDS = 15.0
RECENT_EVENTS = 20
CALL_TIMEOUT = 5.0
T = TypeVar("T")
#: A change the console makes to notifications (retry, cancel): each tag's new row, or why not.
AdminAct = Callable[[ShardClient, list[str]], Call[list[dict[str, Any] | HeraldError]]]


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Feed:
    """The latest overview and the recent notable events; wakes the streams when they change."""

    def __init__(self) -> None:
        self.overview: dict[str, Any] | None = None
        self.seq = 0
        self._events: deque[tuple[int, dict[str, Any]]] = deque(maxlen=100)
        self._changed = asyncio.Event()

    def publish(self, overview: dict[str, Any] | None, events: list[dict[str, Any]]) -> None:
        if overview is not None:
            self.overview = overview
        for event in events:
            self.seq += 1
            self._events.append((self.seq, event))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def note(self, level: str, text: str) -> None:
        self.publish(None, [{"at": time.time(), "level": level, "text": text}])

    def events_after(self, seq: int) -> list[tuple[int, dict[str, Any]]]:
        return [(n, event) for n, event in self._events if n > seq]

    async def changed(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
            return True
        return False


class AdminConsole:
    """One replica's admin console: who may use it, the live figures, the shard calls."""

    def __init__(self, intake: Any) -> None:
        self.intake = intake
        self.settings = intake.settings
        self.admin_key: str = intake.settings.admin_key or ""
        self.shards: list[ShardClient] = intake.shards
        self.throttle = intake.throttle  # the one /metrics and /v1/queue count wrong keys in
        self.revocations = SessionRevocations()
        self.tracker = RateTracker()
        self.feed = Feed()
        self._sampler: asyncio.Task[None] | None = None
        self._sampling = asyncio.Lock()
        self._last_request = time.monotonic()

    # -- credentials ----------------------------------------------------------------------
    async def authorize(self, request: Request, changes: bool = False) -> str | None:
        """The session token for a cookie request, None for the admin key (Bearer); raises
        ``AuthError`` (401: no credential, a wrong key, a session over or logged out),
        ``Forbidden`` (403: a tenant's key, a cookie request changing something without its
        CSRF token or from another origin) or ``TooManyRequests`` (this address guessed)."""
        if not self.admin_key:
            raise AuthError("the admin console is off: set HERALD_ADMIN_KEY")
        self._last_request = time.monotonic()
        authorization = request.headers.get("authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            self.check_key(request, token.strip() if scheme.lower() == "bearer" else "",
                           authorization)
            return None
        session = request.cookies.get(COOKIE)
        if not session:
            raise AuthError("missing admin credential: Authorization: Bearer <admin key>, or log "
                            "in at /admin")
        await self.verify(session)
        if changes:
            self.same_origin(request)
            check_csrf(self.admin_key, session, request.headers.get(CSRF_HEADER))
        return session

    async def verify(self, session: str) -> float:
        """When ``session`` expires; ``AuthError`` if it is forged, over or logged out."""
        expires_at = verify_session(self.admin_key, session, time.time())
        await self.revocations.check(session, expires_at)
        return expires_at

    def check_key(self, request: Request, presented: str, authorization: str) -> None:
        client, now = client_of(request), time.time()
        self.throttle.check(client, now)
        if presented and is_admin_key(self.admin_key, presented):
            return
        with contextlib.suppress(AuthError):
            self.intake.keys.tenant_for(authorization)
            raise Forbidden("a tenant's API key cannot use the admin console (HERALD_ADMIN_KEY can)")
        self.throttle.failed(client, now)
        raise AuthError("invalid admin key")

    def same_origin(self, request: Request) -> None:
        """A browser names the page that sent a request: it must be this Herald's."""
        origin = request.headers.get("origin")
        if origin is None:
            return
        ours = {request.headers.get("host")}
        if self.settings.public_url:
            ours.add(urlsplit(self.settings.public_url).netloc)
        if urlsplit(origin).netloc not in ours:
            raise Forbidden("cross-origin request refused")

    # -- the shards -----------------------------------------------------------------------
    def shard(self, tag: str) -> ShardClient:
        # A requester callback's tag is its notification's tag and a suffix: same shard.
        index = shard_of_tag(tag.split(".", 1)[0], len(self.shards))
        if index is None:
            raise NotFound(f"no notification {tag[:80]}")
        return self.shards[index]

    async def every_shard(self, ask: Callable[[ShardClient], Call[T]]) -> list[T]:
        """Ask every shard; any failure is the answer (a 503 while one restarts)."""
        try:
            return await on_every_shard(self.shards, ask)
        except Exception as exc:  # noqa: BLE001 - any failure is the answer (503 while one restarts)
            raise as_herald_error(exc) from None

    async def each_tag(self, act: AdminAct, tags: list[str]) -> list[dict[str, Any]]:
        """``act`` on each tag's shard (one call per shard); one result per tag, in order."""
        results: list[dict[str, Any]] = [{} for _ in tags]
        by_shard: dict[int, list[int]] = {}
        for i, tag in enumerate(tags):
            index = shard_of_tag(tag.split(".", 1)[0], len(self.shards))
            if index is None:
                results[i] = {"tag": tag} | item_error(NotFound(f"no notification {tag[:80]}"))
            else:
                by_shard.setdefault(index, []).append(i)
        answers = await asyncio.gather(*(
            act(self.shards[s], [tags[i] for i in idx])
            for s, idx in by_shard.items()), return_exceptions=True)
        for (_, idx), answer in zip(by_shard.items(), answers, strict=True):
            for j, i in enumerate(idx):
                outcome = as_herald_error(answer) if isinstance(answer, BaseException) else answer[j]
                results[i] = {"tag": tags[i]} | (
                    item_error(outcome) if isinstance(outcome, HeraldError) else outcome)
        return results

    # -- live figures ---------------------------------------------------------------------
    async def _answer(self, call: Awaitable[Any]) -> Any:
        return await asyncio.wait_for(call, CALL_TIMEOUT)

    async def sample(self, fresh: bool = False) -> dict[str, Any]:
        """A new overview (or one another caller took a moment ago, unless ``fresh``), published
        with what changed since the previous one."""
        async with self._sampling:
            latest = self.feed.overview
            if not fresh and latest is not None and time.time() - latest["at"] < SAMPLE_SECONDS / 2:
                return latest
            figures = await asyncio.gather(
                *(self._answer(s.admin_stats()) for s in self.shards), return_exceptions=True)
            answers: tuple[Any, ...] = await asyncio.gather(
                self._answer(self.intake.supervisor.describe()),
                self._answer(self.intake.supervisor.channel_stats()), return_exceptions=True)
            supervisor, actors = answers
            shards = [f if isinstance(f, ShardFigures) else None for f in figures]
            down = {i: "not answering" if isinstance(f, TimeoutError) else as_herald_error(f).message
                    for i, f in enumerate(figures) if isinstance(f, BaseException)}
            stats = [ping.stats() for ping in actors] if isinstance(actors, list) else []
            now = time.time()
            self.tracker.add(now, [f for f in shards if f is not None])
            overview = build_overview(now, shards,
                                      supervisor if isinstance(supervisor, SupervisorView) else None,
                                      stats, self.tracker, down)
            self.feed.publish(overview, notable(latest, overview))
            return overview

    def ensure_sampling(self) -> None:
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.get_running_loop().create_task(self._sample_loop())

    async def _sample_loop(self) -> None:
        while time.monotonic() - self._last_request < IDLE_SECONDS:
            try:
                await self.sample()
            except Exception:  # the next sample tries again
                log.warning("admin overview sample failed", exc_info=True)
            await asyncio.sleep(SAMPLE_SECONDS)

    async def overview(self) -> dict[str, Any]:
        """Taken now: what a script asks right after a change includes it."""
        self.ensure_sampling()
        return await self.sample(fresh=True)

    async def stream(self, request: Request, session: str | None) -> AsyncIterator[bytes]:
        """Server-sent events: ``overview`` (the first one with the charts' history, then only
        the newest point) and ``notable``; a comment now and then keeps proxies from closing."""
        yield b"retry: 2000\n\n"
        seq, sent_at, first = max(0, self.feed.seq - RECENT_EVENTS), None, True
        ends = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < ends:
            self._last_request = time.monotonic()
            self.ensure_sampling()
            latest = self.feed.overview
            if latest is not None and latest["at"] != sent_at:
                yield _sse("overview", latest if first else latest | {
                    "history": latest["history"][-1:]})
                sent_at, first = latest["at"], False
            for number, event in self.feed.events_after(seq):
                yield _sse("notable", event)
                seq = number
            if not await self.feed.changed(KEEPALIVE_SECONDS):
                yield b": keepalive\n\n"
            if await request.is_disconnected():
                return
            if session is not None:
                try:
                    await self.verify(session)
                except HeraldError:  # over, logged out, or cannot be checked now
                    return
