"""A loopback HTTP server that records requester callbacks (and can answer 500 first)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web


class WebhookReceiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_first: dict[str, int] = {}  # path → how many 500s to answer before 200
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        self.received.append({"path": path, "body": body, "headers": dict(request.headers),
                              "at": time.time()})
        if self.fail_first.get(path, 0) > 0:
            self.fail_first[path] -= 1
            return web.Response(status=500)
        return web.Response(status=204)

    def wait_for(self, path: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [r for r in self.received if r["path"] == path]
            if len(hits) >= count:
                return hits
            time.sleep(0.05)
        raise TimeoutError(f"{count} callbacks to {path} not received in {timeout}s")
