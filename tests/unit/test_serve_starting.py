"""Serve's proxy with Herald's middleware: its own plain-text 404 (no app deployed yet) becomes a
JSON 503 with Retry-After; every answer of Herald's app passes unchanged."""

from __future__ import annotations

import httpx
from starlette.types import Receive, Scope, Send

from serve.starting import NotDeployedIsUnavailable, proxy_middlewares


async def serve_not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """What Serve 2.60's proxy sends for a path no application has (``not_found_response``)."""
    await send({"type": "http.response.start", "status": 404,
                "headers": [[b"content-type", b"text/plain; charset=utf-8"]]})
    await send({"type": "http.response.body",
                "body": f"Path '{scope['path']}' not found. Ping http://.../-/routes".encode()})


async def herald_not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"error": {"code": "not_found"', "more_body": True})
    await send({"type": "http.response.body", "body": b"}}"})


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"taken"})


async def _get(app: object, path: str = "/v1/notifications") -> httpx.Response:
    transport = httpx.ASGITransport(app=NotDeployedIsUnavailable(app))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://herald") as client:
        return await client.post(path, json={})


async def test_serves_own_404_is_a_json_503_with_retry_after() -> None:
    response = await _get(serve_not_found)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "unavailable"


async def test_heralds_own_404_and_other_answers_pass_unchanged() -> None:
    response = await _get(herald_not_found, "/v1/notifications/unknown")
    assert response.status_code == 404 and response.text == '{"error": {"code": "not_found"}}'
    response = await _get(ok)
    assert response.status_code == 202 and response.text == "taken"


def test_the_callback_serve_calls_returns_starlette_middlewares() -> None:
    [middleware] = proxy_middlewares()
    assert middleware.cls is NotDeployedIsUnavailable
