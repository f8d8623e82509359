"""Count the TCP connections an aiohttp session opens: keep-alive and pool limits, observed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp


@contextmanager
def counting_connections() -> Iterator[list[None]]:
    """Every ``aiohttp.ClientSession`` made inside the block appends to the yielded list each time
    it opens a connection (for as long as the session lives)."""
    opened: list[None] = []
    real_session = aiohttp.ClientSession

    async def on_open(*_: object) -> None:
        opened.append(None)

    def traced_session(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(on_open)
        return real_session(*args, trace_configs=[trace], **kwargs)

    aiohttp.ClientSession = traced_session  # type: ignore[misc,assignment]
    try:
        yield opened
    finally:
        aiohttp.ClientSession = real_session  # type: ignore[misc]
