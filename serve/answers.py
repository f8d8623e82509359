"""Intake's answers: JSON bodies, the error shape ``{"error": {"code", "message", "field"}}``,
and the handlers that turn every exception into one (never a bare 500)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray.exceptions import RayTaskError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from herald.errors import (
    HeraldError,
    QueueFull,
    TooManyRequests,
    Unavailable,
    ValidationError,
)

log = logging.getLogger("herald.intake")


class JsonBody(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: HeraldError, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    body["field"] = getattr(error, "field", field)
    headers = {}
    if isinstance(error, QueueFull | TooManyRequests | Unavailable):
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JsonBody({"error": body}, status_code=error.status, headers=headers)


async def shard_call(ref: Any) -> Any:
    """Await a shard's answer; a core error the shard raised is raised here as itself."""
    try:
        return await ref
    except RayTaskError as exc:
        if isinstance(exc.cause, HeraldError):
            raise exc.cause from None
        raise


def as_herald_error(error: BaseException) -> HeraldError:
    """What a client is told about a shard call that failed."""
    if isinstance(error, RayTaskError) and isinstance(error.cause, HeraldError):
        return error.cause
    if isinstance(error, HeraldError):
        return error
    log.warning("shard call failed", exc_info=error)
    return Unavailable("the queue shard is restarting; try again shortly")


def item_error(error: HeraldError, field: str | None = None) -> dict[str, Any]:
    """One entry of a batch answer that failed: ``{"error": {"code", "message", "field"}}``."""
    return {"error": {"code": error.code, "message": error.message, "field": field}}


def install_error_handlers(app: FastAPI) -> None:
    """Every error becomes a JSON answer: the core's by its status, the rest as 503."""

    @app.exception_handler(HeraldError)
    async def _herald_error(_: Request, exc: HeraldError) -> JSONResponse:
        return error_response(exc)


    @app.exception_handler(RequestValidationError)
    async def _request_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return error_response(ValidationError(f"{field}: {first.get('msg')}", field or None))


    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        """Not the caller's fault (a shard restarting, a bug): say so in JSON, and log it."""
        log.exception("request failed", exc_info=exc)
        return JsonBody({"error": {"code": "unavailable", "message": "try again shortly",
                                   "field": None}}, status_code=503, headers={"Retry-After": "1"})


    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, __: ClientDisconnect) -> Response:
        return Response(status_code=499)  # nobody is listening any more


    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JsonBody({"error": {"code": codes.get(exc.status_code, "http_error"),
                                   "message": str(exc.detail), "field": None}},
                        status_code=exc.status_code)
