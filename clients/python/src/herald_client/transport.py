"""What the sync and the asyncio client share around the bytes: where Herald is, the key, the
timeouts (checked once), how a ``Call`` becomes an httpx request, and httpx's errors mapped to
this package's in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from herald_client.calls import Call, request_headers
from herald_client.errors import ConnectError, Timeout, TransportError
from herald_client.version import __version__

#: A connection is made within this (or the whole timeout, if shorter).
CONNECT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Target:
    """A Herald to call: its base URL, the API key (None: browser calls only), the timeout."""

    url: str
    key: str | None = field(default=None, repr=False)
    #: Seconds an answer may take; a status ``wait`` is added to it.
    timeout: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http:// or https:// with a host, not {self.url!r}")
        if not self.timeout > 0:
            raise ValueError("timeout must be > 0 seconds")
        object.__setattr__(self, "url", self.url.rstrip("/"))

    def client_options(self) -> dict[str, Any]:
        """What both httpx clients are made with."""
        return {"base_url": self.url, "headers": {"User-Agent": f"herald-client/{__version__}"},
                "timeout": self.timeout_for(0.0)}

    def timeout_for(self, wait: float) -> httpx.Timeout:
        return httpx.Timeout(self.timeout + wait, connect=min(self.timeout, CONNECT_SECONDS))

    def request(self, http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
        return http.build_request(
            call.method, call.path, params=dict(call.params) or None, json=call.body,
            headers=request_headers(call, self.key), timeout=self.timeout_for(call.wait))


@contextmanager
def mapped_errors(url: str) -> Iterator[None]:
    """httpx's transport errors as this package's ``TransportError`` tree."""
    try:
        yield
    except httpx.ConnectError as exc:
        raise ConnectError(f"cannot reach Herald at {url}: {exc}") from exc
    except httpx.TimeoutException as exc:
        raise Timeout(f"Herald at {url} did not answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise TransportError(f"request to Herald at {url} failed: "
                             f"{exc or type(exc).__name__}") from exc
