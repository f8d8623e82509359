"""Recipients' settings over HTTP: ``PUT``, ``GET`` and ``DELETE /v1/users/{uid}`` (issue 20).

A tenant's backend says what each of its users wants — time zone, quiet hours, per-category
channel preferences (``herald.recipients``) — and the user's shard keeps it (``shard_for_uid``),
where every notification for that user is accepted. Tenant-scoped like everything else: one
tenant never sees nor changes another's users. The routes are plain functions on ``users_router``
(included by ``serve/app.py``), reaching the replica's ``Intake`` through ``attach_users``, as the
admin console does; they only parse, authenticate and call.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from actors.clients import ShardClient
from herald.errors import Unavailable, ValidationError
from herald.recipients import Recipient, parse_recipient
from herald.sharding import shard_for_uid
from serve.answers import JsonBody

users_router = APIRouter()
_intake: Any = None
#: As ``user.uid`` in a notification.
MAX_UID = 128


def attach_users(intake: Any) -> None:
    """Called by ``Intake.__init__``: these routes work over ``intake``."""
    global _intake
    _intake = intake


def _shard(request: Request, uid: str) -> tuple[str, ShardClient]:
    """The caller's tenant and the shard that keeps ``uid``'s settings."""
    if _intake is None:
        raise Unavailable("starting")
    tenant = _intake._tenant(request)
    if not 0 < len(uid) <= MAX_UID:
        raise ValidationError(f"uid: 1 to {MAX_UID} characters", "uid")
    return tenant, _intake.shards[shard_for_uid(uid, len(_intake.shards))]


def _answer(uid: str, recipient: Recipient | None) -> Response:
    """A user without settings gets everything: no time zone, no quiet hours, every category."""
    return JsonBody({"uid": uid, **(recipient or Recipient()).public()})


@users_router.put("/v1/users/{uid}")
async def put_user(uid: str, request: Request) -> Response:
    """Replace the user's settings (every field optional; unknown ones are a 422)."""
    tenant, shard = _shard(request, uid)
    recipient = parse_recipient(await _intake._json(request))
    await shard.set_recipient(tenant, uid, recipient)
    return _answer(uid, recipient)


@users_router.get("/v1/users/{uid}")
async def get_user(uid: str, request: Request) -> Response:
    tenant, shard = _shard(request, uid)
    return _answer(uid, await shard.recipient(tenant, uid))


@users_router.delete("/v1/users/{uid}")
async def delete_user(uid: str, request: Request) -> Response:
    """Forget the user's settings: they get everything again."""
    tenant, shard = _shard(request, uid)
    await shard.set_recipient(tenant, uid, None)
    return _answer(uid, None)
