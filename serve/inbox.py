"""A user's inbox feed over HTTP (issue 20, 5; ``herald.inbox``).

The tenant's backend reads and marks it with its key: ``GET /v1/users/{uid}/notifications`` and
``POST /v1/users/{uid}/notifications/read``. The user's page does the same with its browser
token and no key (``GET /v1/browser/notifications?token=…``, ``POST /v1/browser/notifications/
read?token=…``): the token names tenant and uid, as for the WebSocket (``herald.js`` offers
both). The feed lives on the user's shard; the routes only parse, authenticate and call.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from herald.browser_tokens import verify_token
from herald.errors import AuthError, Unavailable, ValidationError
from herald.inbox import feed_query, read_marks
from herald.sharding import shard_for_uid
from serve.answers import JsonBody

inbox_router = APIRouter()
_intake: Any = None
#: As ``user.uid`` in a notification.
MAX_UID = 128


def attach_inbox(intake: Any) -> None:
    global _intake
    _intake = intake


def _replica() -> Any:
    if _intake is None:
        raise Unavailable("starting")
    return _intake


def _by_key(request: Request, uid: str) -> tuple[str, str]:
    """The caller's tenant (its key), and ``uid`` checked."""
    tenant = _replica()._tenant(request)
    if not 0 < len(uid) <= MAX_UID:
        raise ValidationError(f"uid: 1 to {MAX_UID} characters", "uid")
    return tenant, uid


def _by_token(token: str | None) -> tuple[str, str]:
    """The tenant and uid a browser token names (401 without a valid one)."""
    if not token:
        raise AuthError("a browser token is required (?token=…, from POST /v1/browser-tokens)")
    identity = verify_token(_replica()._browser_secret, token, time.time())
    return identity.tenant, identity.uid


async def _page(request: Request, tenant: str, uid: str) -> Response:
    query = feed_query(tenant, uid, request.query_params)
    shards = _replica().shards
    return JsonBody((await shards[shard_for_uid(uid, len(shards))].feed(query)).public())


async def _mark(request: Request, tenant: str, uid: str) -> Response:
    marks = read_marks(await _replica()._json(request))
    shards = _replica().shards
    answer = await shards[shard_for_uid(uid, len(shards))].mark_read(tenant, uid, marks)
    return JsonBody(answer.public())


@inbox_router.get("/v1/users/{uid}/notifications")
async def user_feed(uid: str, request: Request) -> Response:
    """The user's feed, newest first: ``?unread=true`` for unread only, ``limit``, ``cursor``."""
    return await _page(request, *_by_key(request, uid))


@inbox_router.post("/v1/users/{uid}/notifications/read")
async def user_feed_read(uid: str, request: Request) -> Response:
    """Mark items read: ``{"tags": [...]}`` or ``{"all": true}``."""
    return await _mark(request, *_by_key(request, uid))


@inbox_router.get("/v1/browser/notifications")
async def browser_feed(request: Request, token: str | None = None) -> Response:
    """The token's user's feed (as ``GET /v1/users/{uid}/notifications``)."""
    return await _page(request, *_by_token(token))


@inbox_router.post("/v1/browser/notifications/read")
async def browser_feed_read(request: Request, token: str | None = None) -> Response:
    """Mark the token's user's items read (as ``POST /v1/users/{uid}/notifications/read``)."""
    return await _mark(request, *_by_token(token))
