"""``Herald``: the synchronous client. One pooled connection per client; reuse it, close it."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TypeVar

import httpx

from herald_client import calls
from herald_client.calls import Call, Json
from herald_client.models import (
    Accepted,
    BrowserToken,
    FeedPage,
    Notification,
    ReadCount,
    Refused,
    ShardDepth,
    Suppression,
    UserSettings,
)
from herald_client.transport import Target, mapped_errors

T = TypeVar("T")


class Herald:
    """Calls one Herald with one tenant's API key.

    ``Herald("https://herald.example.org", key)``; ``timeout`` is the seconds any answer may
    take (a status ``wait`` is added); ``transport`` replaces httpx's (a proxy, a test double).
    Every method returns a typed value or raises from ``herald_client.errors``.
    """

    def __init__(self, url: str, key: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.target = Target(url, key, timeout)
        self._http = httpx.Client(transport=transport, **self.target.client_options())

    def __enter__(self) -> Herald:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call[T]) -> T:
        """Send one ``calls`` value and read its answer (what every method below does)."""
        with mapped_errors(self.target.url):
            response = self._http.send(self.target.request(self._http, call))
        return calls.answer(call, response.status_code, response.headers, response.content)

    # -- notifications ---------------------------------------------------------------------
    def send(self, notification: Json, *, idempotency_key: str | None = None) -> Accepted:
        """Queue one notification (Herald's JSON payload); an ``idempotency_key`` used before
        answers the first one's tag with ``duplicate=True``."""
        return self.call(calls.send(notification, idempotency_key))

    def send_batch(self, notifications: Sequence[Json]) -> list[Accepted | Refused]:
        """Queue up to 1000 at once: one result per entry, in order."""
        return self.call(calls.send_batch(notifications))

    def status(self, tag: str, *, wait: float = 0.0) -> Notification:
        """Its status; ``wait`` (≤ 60 s) holds the answer until it is final or time is up."""
        return self.call(calls.status(tag, wait))

    def cancel(self, tag: str) -> Notification:
        """Cancel while queued or retrying (``Conflict`` once sending or done)."""
        return self.call(calls.cancel(tag))

    def retry(self, tag: str) -> Notification:
        """Send a dead notification again with fresh attempts (``Conflict`` unless dead)."""
        return self.call(calls.retry(tag))

    def queue(self) -> list[ShardDepth]:
        return self.call(calls.queue())

    # -- browsers --------------------------------------------------------------------------
    def browser_token(self, uid: str | int) -> BrowserToken:
        """A short-lived token for ``uid``'s browser (give it to ``herald.js``)."""
        return self.call(calls.browser_token(uid))

    def browser_endpoint(self, token: str) -> str:
        """The WebSocket URL a browser with ``token`` connects to."""
        return self.call(calls.browser_endpoint(token))

    # -- recipients ------------------------------------------------------------------------
    def put_user(self, uid: str | int, settings: UserSettings) -> UserSettings:
        """Replace a user's settings."""
        return self.call(calls.put_user(uid, settings))

    def get_user(self, uid: str | int) -> UserSettings:
        return self.call(calls.get_user(uid))

    def delete_user(self, uid: str | int) -> UserSettings:
        """Forget a user's settings: they get everything again."""
        return self.call(calls.delete_user(uid))

    def list_suppressions(self) -> list[Suppression]:
        return self.call(calls.list_suppressions())

    def add_suppression(self, contact: str) -> Suppression:
        """Send nothing more to this email address or E.164 number."""
        return self.call(calls.add_suppression(contact))

    def lift_suppression(self, contact: str) -> str:
        """Lift every suppression of ``contact`` (``NotFound`` if none)."""
        return self.call(calls.lift_suppression(contact))

    # -- inbox feed ------------------------------------------------------------------------
    def feed(self, uid: str | int, *, unread: bool = False, limit: int = 20,
             cursor: str | None = None) -> FeedPage:
        """A page of the user's feed, newest first (``unread``: unread items only)."""
        return self.call(calls.feed(uid, unread, limit, cursor))

    def mark_read(self, uid: str | int, tags: Sequence[str]) -> ReadCount:
        return self.call(calls.mark_read(uid, tags))

    def mark_all_read(self, uid: str | int) -> ReadCount:
        return self.call(calls.mark_read(uid, None))

    def browser_feed(self, token: str, *, unread: bool = False, limit: int = 20,
                     cursor: str | None = None) -> FeedPage:
        """The feed of the browser token's user (no API key needed)."""
        return self.call(calls.browser_feed(token, unread, limit, cursor))

    def browser_mark_read(self, token: str, tags: Sequence[str]) -> ReadCount:
        return self.call(calls.browser_mark_read(token, tags))

    def browser_mark_all_read(self, token: str) -> ReadCount:
        return self.call(calls.browser_mark_read(token, None))
