"""The Python client's shape, without a Herald: its public names, the two clients kept alike,
what it raises when nothing answers, and that it reads Herald's answers as Herald's own code
writes them (the client cannot import Herald; this test can). Its calls are tested against a
running Herald in ``tests/integration/test_python_client.py``."""

from __future__ import annotations

import dataclasses
import inspect
import socket
from typing import Any, TypeVar

import herald_client
import orjson
import pytest
from herald_client import (
    AsyncHerald,
    Attempt,
    ConnectError,
    FeedItem,
    FeedPage,
    Herald,
    HeraldError,
    Notification,
    QuietHours,
    ReadCount,
    Status,
    Suppression,
    TransportError,
    UserSettings,
    calls,
)
from herald_client.calls import Call
from herald_client.models import FINAL

from herald.attempt import Attempt as ServerAttempt
from herald.inbox import FeedItem as ServerFeedItem
from herald.inbox import FeedPage as ServerFeedPage
from herald.inbox import ReadAnswer as ServerReadAnswer
from herald.recipients import parse_recipient
from herald.record import Record
from herald.status import FINAL as SERVER_FINAL
from herald.status import Status as ServerStatus
from herald.suppressions import Suppression as ServerSuppression
from tests.unit.conftest import T0, make_notification

T = TypeVar("T")

#: The public API changes only on purpose (httpx pins its own the same way).
PUBLIC = [
    "Accepted", "ApiError", "AsyncHerald", "Attempt", "AuthError", "BrowserToken", "Conflict",
    "ConnectError", "FeedItem", "FeedPage", "Forbidden", "Herald", "HeraldError",
    "InvalidRequest", "NotFound", "Notification", "PayloadTooLarge", "QuietHours", "ReadCount",
    "Refused", "ServerError", "ShardDepth", "Status", "Suppression", "Timeout",
    "TooManyRequests", "TransportError", "Unavailable", "UnexpectedAnswer", "UserSettings",
    "__version__",
]
#: What only one of the two has: how each is closed.
OWN = {"close", "aclose"}


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(cls).items()
            if inspect.isfunction(member) and not name.startswith("_") and name not in OWN}


def test_the_public_names_are_pinned() -> None:
    assert sorted(herald_client.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(herald_client, name), name


def test_the_async_client_has_every_method_of_the_sync_one_alike() -> None:
    sync, coroutine = _methods(Herald), _methods(AsyncHerald)
    assert sync.keys() == coroutine.keys()
    assert len(sync) >= 20
    for name, signature in sync.items():
        assert str(coroutine[name]) == str(signature), name
        assert inspect.iscoroutinefunction(getattr(AsyncHerald, name)), name


def test_nothing_listening_is_a_connect_error_also_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nobody listens there
    with Herald(f"http://127.0.0.1:{port}", "key") as herald, \
            pytest.raises(ConnectError) as refused:
        herald.queue()
    assert isinstance(refused.value, ConnectionError)  # catchable as the built-in too
    assert isinstance(refused.value, TransportError) and isinstance(refused.value, HeraldError)
    assert f"127.0.0.1:{port}" in str(refused.value)


@pytest.mark.parametrize("url", ["herald.example.org", "ftp://herald.example.org", "http://"])
def test_a_url_that_is_not_http_is_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match="url must be http"):
        Herald(url, "key")


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Herald("http://127.0.0.1:1", "key", timeout=0)


# -- the client reads what Herald writes ---------------------------------------------------------
def _read(call: Call[T], answer: Any) -> T:
    return calls.answer(call, 200, {}, orjson.dumps(answer))


def test_the_statuses_are_heralds() -> None:
    assert {s.value for s in Status} == {s.value for s in ServerStatus}
    assert {s.value for s in FINAL} == {s.value for s in SERVER_FINAL}


def test_a_status_view_is_read_field_for_field() -> None:
    record = Record.new(make_notification("EMAIL", bill_to="dept-7"), seq=1)
    record.status, record.attempts, record.provider_id = ServerStatus.SENT, 1, "<id@x>"
    record.history = [ServerAttempt(at=T0 + 1, outcome="sent", provider="smtp", attempt=1,
                                    provider_id="<id@x>", info={"segments": 1}, receipt=True)]
    view = record.public()
    assert {f.name for f in dataclasses.fields(Notification)} == set(view)  # none left behind
    read = _read(calls.status(record.tag), view)
    assert (read.tag, read.status, read.channel, read.bill_to) == (
        record.tag, Status.SENT, "EMAIL", "dept-7")
    (attempt,) = read.history
    assert {f.name for f in dataclasses.fields(Attempt)} == set(view["history"][0])
    assert (attempt.provider_id, attempt.info, attempt.receipt) == ("<id@x>", {"segments": 1}, True)


def test_user_settings_and_suppressions_are_read_as_herald_writes_them() -> None:
    recipient = parse_recipient({"timezone": "Europe/Berlin",
                                 "quiet_hours": {"start": "22:00", "end": "07:00"},
                                 "preferences": {"CM": {"email": False}}})
    settings = _read(calls.get_user("u1"), {"uid": "u1", **recipient.public()})
    assert settings == UserSettings("Europe/Berlin", QuietHours("22:00", "07:00"),
                                    {"CM": {"email": False}})
    assert calls.put_user("u1", settings).body == recipient.public()  # what PUT takes back
    stop = ServerSuppression("+14155550100", "stop", T0, sender="+15005550006")
    assert _read(calls.list_suppressions(), {"items": [stop.public()]}) == [
        Suppression("+14155550100", "stop", T0, "+15005550006")]


def test_a_feed_page_is_read_field_for_field() -> None:
    item = ServerFeedItem(tag="t1", type="CM_BROWSER", channel="BROWSER", status="delivered",
                          priority=5, title="T", content="hi", created_at=T0, read_at=T0 + 1)
    view = ServerFeedPage((item,), unread=0, next_before=7).public()
    assert {f.name for f in dataclasses.fields(FeedItem)} == set(view["items"][0])
    assert {f.name for f in dataclasses.fields(FeedPage)} == set(view)
    page = _read(calls.feed("u1"), view)
    assert page == FeedPage((FeedItem("t1", "CM_BROWSER", "BROWSER", Status.DELIVERED, 5, "T",
                                      "hi", T0, True, T0 + 1),), 0, view["next"])
    assert _read(calls.mark_read("u1", ["t1"]), ServerReadAnswer(1, 0).public()) == \
        ReadCount(1, 0)
