"""What Serve's HTTP proxy answers while Herald's app is not deployed: 503 + ``Retry-After`` in
Herald's error shape, never Serve's own plain-text 404, which a client must take as final.

Serve's proxy listens as soon as Serve starts, before ``serve.run`` has deployed Herald's app
(seconds, at every start and restart; and again while the app is deleted at stop), and answers
``404 Path '…' not found`` meanwhile. Herald's app is mounted at ``/``, so once deployed it
answers every path itself (its own 404s are JSON): a plain-text 404 from the proxy can only mean
"no Herald behind me yet". The proxy takes Starlette middlewares from the function named by
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` in its environment, which ``herald up`` sets for
the local Ray it starts (a Ray started with ``ray start`` needs it in that command's environment).
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The variable Serve's proxy reads, and the function it names (``module:function``).
PROXY_CALLBACK_VARIABLE = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "serve.starting:proxy_middlewares"
RETRY_AFTER_SECONDS = 1
_BODY = orjson.dumps({"error": {"code": "unavailable", "field": None, "message":
                                "Herald is starting or stopping; try again shortly"}})
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode())]


class NotDeployedIsUnavailable:
    """Pure ASGI middleware for Serve's proxy: its own 404 (plain text) becomes Herald's 503."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replaced = False

        async def answer(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start":
                if message["status"] == 404 and _plain_text(message.get("headers", ())):
                    replaced = True
                    await send({"type": "http.response.start", "status": 503, "headers": _HEADERS})
                    await send({"type": "http.response.body", "body": _BODY})
                    return
            elif replaced:
                return  # the body of the 404, answered already
            await send(message)

        await self.app(scope, receive, answer)


def _plain_text(headers: Iterable[tuple[bytes, bytes] | list[bytes]]) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return bytes(value).startswith(b"text/plain")
    return False


def proxy_middlewares() -> list[Middleware]:
    """What ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` names: Serve's proxy calls it once."""
    return [Middleware(NotDeployedIsUnavailable)]
