"""Serve an ASGI app with uvicorn on loopback, in a thread, for the length of a ``with``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from capture.net import free_port


@contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` answering on ``http://127.0.0.1:<port>`` (its base URL) until the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                                           log_level="critical"))
    thread = threading.Thread(target=server.run, name="loopback-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
