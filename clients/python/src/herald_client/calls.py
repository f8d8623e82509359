"""Every call of Herald's API as a plain value, and how its answer is read: no sockets here.

A ``Call`` says what to send (method, path, query, JSON body, headers) and how to turn the
success answer into a typed value; ``answer`` reads what came back, raising the ``errors`` tree
for an error status. The sync and the asyncio client only move the bytes (``client.py``,
``async_client.py``), so both build and read every call the same way.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import pydantic

from herald_client.errors import ApiError, UnexpectedAnswer, error_class
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

T = TypeVar("T")
#: A JSON payload as this client sends it.
Json = Mapping[str, Any]
#: The path of one notification, user…: a tag or uid may hold any character.
NOTIFICATION, USER = "/v1/notifications/{}", "/v1/users/{}"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request to Herald and the reader of its success answer."""

    method: str
    path: str
    #: The answer's JSON → the typed result.
    read: Callable[[Any], T]
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Whether it carries the API key (browser calls carry their token instead).
    authenticated: bool = True
    #: Seconds Herald may hold the answer (a status ``wait``), on top of the timeout.
    wait: float = 0.0


def request_headers(call: Call[Any], key: str | None) -> dict[str, str]:
    headers = dict(call.headers)
    if call.authenticated and key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def answer(call: Call[T], status: int, headers: Mapping[str, str], content: bytes) -> T:
    """The typed result of ``call`` from Herald's answer; an error status raises ``ApiError``."""
    body = _json(content)
    if not 200 <= status < 300:
        raise api_error(status, headers, body, content)
    try:
        return call.read(body)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        problem = f"{'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']}"
    except (KeyError, TypeError, AttributeError) as exc:  # not the answer's shape at all
        problem = f"{type(exc).__name__}: {exc}"
    raise UnexpectedAnswer(f"{call.method} {call.path}: unexpected answer ({problem})")


def api_error(status: int, headers: Mapping[str, str], body: Any, content: bytes) -> ApiError:
    """Herald's ``{"error": {"code", "message", "field"}}`` as an exception; another answer
    (a proxy's page, Serve's plain 503) keeps its text as the message."""
    error = body.get("error") if isinstance(body, dict) else None
    retry_after = _seconds(headers.get("retry-after"))
    kind = error_class(status)
    if isinstance(error, dict):
        field_ = error.get("field")
        return kind(status, str(error.get("code") or "error"), str(error.get("message") or ""),
                    str(field_) if field_ is not None else None, retry_after, body)
    text = " ".join(content.decode("utf-8", "replace").split())[:200]
    return kind(status, None, text, None, retry_after, body)


def _json(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:  # not JSON (or not UTF-8)
        return None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: Herald always sends seconds
        return None


#: One pydantic reader per answer type, made on first use (making one takes a while).
_READERS: dict[type, pydantic.TypeAdapter[Any]] = {}


def _as(kind: type[T]) -> Callable[[Any], T]:
    """A reader of one JSON object into ``kind`` (a dataclass of ``models``), extra keys ignored."""
    reader = _READERS.get(kind) or _READERS.setdefault(kind, pydantic.TypeAdapter(kind))
    return reader.validate_python


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


def _accepted(entry: Mapping[str, Any]) -> Accepted:
    details = entry["details"]
    return _as(Accepted)({"tag": details["tag"], "pos": details["pos"],
                          "duplicate": bool(entry.get("duplicate", False))})


def _result(index: int, entry: Mapping[str, Any]) -> Accepted | Refused:
    if "error" in entry:
        return _as(Refused)({**entry["error"], "index": index})
    return _accepted(entry)


# -- notifications -----------------------------------------------------------------------
def send(notification: Json, idempotency_key: str | None = None) -> Call[Accepted]:
    """Queue one notification; the same ``idempotency_key`` again gets the first one's tag."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return Call("POST", "/v1/notifications", _accepted, body=notification, headers=headers)


def send_batch(notifications: Sequence[Json]) -> Call[list[Accepted | Refused]]:
    """Queue many at once; valid ones are queued even when others are refused (in order)."""
    def read(body: Any) -> list[Accepted | Refused]:
        return [_result(i, entry) for i, entry in enumerate(body["results"])]
    return Call("POST", "/v1/notifications/batch", read,
                body={"notifications": list(notifications)})


def status(tag: str, wait: float = 0.0) -> Call[Notification]:
    """A notification's status; with ``wait`` (≤ 60 s), Herald holds the answer until it is
    final or the time is up."""
    params = {"wait": str(wait)} if wait else {}
    return Call("GET", NOTIFICATION.format(_segment(tag)), _as(Notification), params=params,
                wait=max(wait, 0.0))


def cancel(tag: str) -> Call[Notification]:
    return Call("DELETE", NOTIFICATION.format(_segment(tag)), _as(Notification))


def retry(tag: str) -> Call[Notification]:
    return Call("POST", NOTIFICATION.format(_segment(tag)) + "/retry", _as(Notification))


def queue() -> Call[list[ShardDepth]]:
    return Call("GET", "/v1/queue", lambda body: [_as(ShardDepth)(s) for s in body["shards"]])


# -- browsers ----------------------------------------------------------------------------
def browser_token(uid: str | int) -> Call[BrowserToken]:
    return Call("POST", "/v1/browser-tokens", _as(BrowserToken), body={"uid": uid})


def browser_endpoint(token: str) -> Call[str]:
    """The WebSocket URL (token included) of the gateway that serves this token's user."""
    return Call("GET", "/v1/browser-endpoint", lambda body: str(body["url"]),
                params={"token": token}, authenticated=False)


# -- recipients --------------------------------------------------------------------------
def _settings(body: Any) -> UserSettings:
    return _as(UserSettings)({k: v for k, v in body.items() if k != "uid"})


def put_user(uid: str | int, settings: UserSettings) -> Call[UserSettings]:
    body = dataclasses.asdict(settings)
    body["preferences"] = {c: dict(channels) for c, channels in settings.preferences.items()}
    return Call("PUT", USER.format(_segment(uid)), _settings, body=body)


def get_user(uid: str | int) -> Call[UserSettings]:
    return Call("GET", USER.format(_segment(uid)), _settings)


def delete_user(uid: str | int) -> Call[UserSettings]:
    return Call("DELETE", USER.format(_segment(uid)), _settings)


def list_suppressions() -> Call[list[Suppression]]:
    return Call("GET", "/v1/suppressions",
                lambda body: [_as(Suppression)(entry) for entry in body["items"]])


def add_suppression(contact: str) -> Call[Suppression]:
    return Call("POST", "/v1/suppressions", _as(Suppression), body={"contact": contact})


def lift_suppression(contact: str) -> Call[str]:
    """Lift every suppression of ``contact``; the answer is the contact as Herald keeps it."""
    return Call("DELETE", f"/v1/suppressions/{_segment(contact)}",
                lambda body: str(body["contact"]))


# -- inbox feed --------------------------------------------------------------------------
def _feed_params(unread: bool, limit: int, cursor: str | None) -> dict[str, str]:
    params = {"unread": "true" if unread else "false", "limit": str(limit)}
    if cursor is not None:
        params["cursor"] = cursor
    return params


def _read_body(tags: Sequence[str] | None) -> dict[str, Any]:
    return {"all": True} if tags is None else {"tags": list(tags)}


def feed(uid: str | int, unread: bool = False, limit: int = 20,
         cursor: str | None = None) -> Call[FeedPage]:
    return Call("GET", USER.format(_segment(uid)) + "/notifications", _as(FeedPage),
                params=_feed_params(unread, limit, cursor))


def mark_read(uid: str | int, tags: Sequence[str] | None) -> Call[ReadCount]:
    """Mark ``tags`` read (None: every item of the feed)."""
    return Call("POST", USER.format(_segment(uid)) + "/notifications/read", _as(ReadCount),
                body=_read_body(tags))


def browser_feed(token: str, unread: bool = False, limit: int = 20,
                 cursor: str | None = None) -> Call[FeedPage]:
    return Call("GET", "/v1/browser/notifications", _as(FeedPage),
                params={"token": token, **_feed_params(unread, limit, cursor)},
                authenticated=False)


def browser_mark_read(token: str, tags: Sequence[str] | None) -> Call[ReadCount]:
    return Call("POST", "/v1/browser/notifications/read", _as(ReadCount),
                params={"token": token}, body=_read_body(tags), authenticated=False)
