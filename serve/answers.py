"""Intake's answers: JSON bodies, the error shape ``{"error": {"code", "message", "field"}}``,
and the handlers that turn every exception into one.

What a failure is worth to the client is decided here, by type (``temporary``): what will pass
by itself (an actor restarting or unreachable, a Ray timeout, a full disk, a busy database) is a
503 with ``Retry-After``; anything else unexpected is a bug, a 500 ``internal`` error without
``Retry-After`` (the same request would fail again), logged with its traceback, never shown.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray.exceptions import (
    ActorUnavailableError,
    ActorUnschedulableError,
    GetTimeoutError,
    NodeDiedError,
    ObjectLostError,
    ObjectStoreFullError,
    OutOfDiskError,
    OutOfMemoryError,
    PendingCallsLimitExceeded,
    RayActorError,
    RaySystemError,
    RayTaskError,
    TaskUnschedulableError,
    WorkerCrashedError,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from herald.errors import (
    HeraldError,
    Internal,
    QueueFull,
    TooManyRequests,
    Unavailable,
    ValidationError,
)

log = logging.getLogger("herald.intake")

#: Ray's errors that mean "this actor, node or the cluster cannot answer now" (an actor died or is
#: restarting, a node went away, a call timed out, memory or the object store is full), not
#: "the code is wrong". ``RayActorError`` covers ``ActorDiedError``.
RAY_TEMPORARY: tuple[type[BaseException], ...] = (
    RayActorError, ActorUnavailableError, ActorUnschedulableError, GetTimeoutError,
    NodeDiedError, WorkerCrashedError, ObjectLostError, ObjectStoreFullError, OutOfDiskError,
    OutOfMemoryError, PendingCallsLimitExceeded, RaySystemError, TaskUnschedulableError)
#: OS errors a disk or a device gets over: full, over quota, I/O error, busy.
TEMPORARY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EBUSY, errno.EAGAIN})
#: SQLite's primary result codes for the same: locked by another connection, full, I/O error.
SQLITE_TEMPORARY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL,
                              sqlite3.SQLITE_IOERR})
TEMPORARY_MESSAGE = "Herald cannot answer this now (a queue shard restarting?); try again shortly"


def temporary(error: BaseException) -> bool:
    """Whether ``error`` will likely pass by itself (a 503 is the answer), rather than a bug."""
    if isinstance(error, RayTaskError):  # raised inside an actor: judge what it raised
        return error.cause is not None and error.cause is not error and temporary(error.cause)
    if isinstance(error, (*RAY_TEMPORARY, TimeoutError)):
        return True
    if isinstance(error, sqlite3.OperationalError):
        code = getattr(error, "sqlite_errorcode", None)
        return isinstance(code, int) and code & 0xFF in SQLITE_TEMPORARY
    return isinstance(error, OSError) and error.errno in TEMPORARY_ERRNOS


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


def as_herald_error(error: BaseException) -> HeraldError:
    """What a client is told about a call that failed: the core's error as it is, ``Unavailable``
    for what is temporary, else ``Internal`` (a bug, logged here with its traceback)."""
    if isinstance(error, RayTaskError) and isinstance(error.cause, HeraldError):
        return error.cause
    if isinstance(error, HeraldError):
        return error
    if temporary(error):
        log.warning("call failed, temporarily: %s", type(error).__name__)
        return Unavailable(TEMPORARY_MESSAGE)
    log.error("request failed: a bug", exc_info=error)
    return Internal("internal error (logged); the same request would fail again")


def item_error(error: HeraldError, field: str | None = None) -> dict[str, Any]:
    """One entry of a batch answer that failed: ``{"error": {"code", "message", "field"}}``."""
    return {"error": {"code": error.code, "message": error.message, "field": field}}


def install_error_handlers(app: FastAPI) -> None:
    """Every error becomes a JSON answer: the core's by its status, the rest by
    ``as_herald_error`` (503 when temporary, else 500)."""

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
        """Not the caller's fault: a 503 if it will pass (a shard restarting), else a 500."""
        return error_response(as_herald_error(exc))


    @app.exception_handler(ClientDisconnect)
    async def _gone(_: Request, __: ClientDisconnect) -> Response:
        return Response(status_code=499)  # nobody is listening any more


    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JsonBody({"error": {"code": codes.get(exc.status_code, "http_error"),
                                   "message": str(exc.detail), "field": None}},
                        status_code=exc.status_code)
