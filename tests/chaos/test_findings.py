"""Defects the chaos runs found in Herald, each pinned by a test that fails until it is fixed.

(The restarting Herald's 404s are pinned in ``test_own_herald.py``: they need a ``herald up``.)
"""

from __future__ import annotations

import logging
import time

import websockets
from ray._common.formatters import JSONFormatter

from actors.providers.websocket_browser import WebSocketGateway
from herald.browser_tokens import mint_token


class _Recorder(logging.Handler):
    """Formats like Herald's actors do (Ray's JSON log lines) and keeps what it could not."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JSONFormatter())
        self.lines: list[str] = []
        self.failed: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # noqa: BLE001 - what logging would print as "Logging error"
            self.failed.append(f"{record.name}: {record.getMessage()!r}: {exc}")


async def test_browser_connections_log_as_json_lines() -> None:
    """Found by `make chaos`: the gateway's connection records were lost to JSON logging."""
    recorder = _Recorder()
    root = logging.getLogger()
    level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.INFO)  # what ray.LoggingConfig(log_level="INFO") does in an actor
    gateway = WebSocketGateway("127.0.0.1", 0, b"chaos-secret")
    try:
        await gateway.start()
        token, _ = mint_token(b"chaos-secret", "tenant", "uid-1", 60.0, time.time())
        async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/ws?token={token}"):
            pass
        await gateway.close()
    finally:
        root.removeHandler(recorder)
        root.setLevel(level)
    assert not recorder.failed, recorder.failed
