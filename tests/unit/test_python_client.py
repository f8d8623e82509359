"""The Python client's shape, without a Herald: its public names, the two clients kept alike,
and what it raises when nothing answers. Its calls are tested against a running Herald in
``tests/integration/test_python_client.py``."""

from __future__ import annotations

import inspect
import socket

import herald_client
import pytest
from herald_client import AsyncHerald, ConnectError, Herald, HeraldError, TransportError

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
