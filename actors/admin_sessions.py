"""Logged-out admin sessions, shared by every intake replica: one small named Ray actor.

A session is a signed token that any replica verifies alone (``herald.admin_session``), so
ending one before its expiry needs state every replica sees: with ``HERALD_INTAKE_REPLICAS``
above 1 a logout reaches one replica and the next request may reach another, so a set in a
replica's memory would not do. The set is ``herald.admin_session.Revocations``, held by one
detached actor (``herald-admin-sessions`` in the ``herald`` namespace) that the first replica
to need it starts and the others find. Ray restarts it if its process dies; it then refuses
every session minted before its restart (it cannot know which were revoked), so a crash can
only log the operator out, never let a revoked cookie back in. Intake reaches it only through
``SessionRevocations``, its client.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import ray

from herald.actor_names import NAMESPACE
from herald.admin_session import Revocations, session_nonce
from herald.errors import AuthError, Unavailable

NAME = "herald-admin-sessions"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RevokedSessions:
    def __init__(self) -> None:
        restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self._set = Revocations(since=time.time() if restarted else 0.0)

    def revoke(self, nonce: str, expires_at: float) -> None:
        self._set.revoke(nonce, expires_at, time.time())

    def revoked(self, nonce: str, expires_at: float) -> bool:
        return self._set.revoked(nonce, expires_at, time.time())


class SessionRevocations:
    """The replica's door to the shared set: ``revoke`` at logout, ``check`` on every cookie."""

    def __init__(self) -> None:
        self._handle: Any = None

    def _actor(self) -> Any:
        if self._handle is None:
            self._handle = RevokedSessions.options(  # type: ignore[attr-defined]
                name=NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote()
        return self._handle

    async def _ask(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            return await call(self._actor())
        except Exception:  # noqa: BLE001 - a 503 while it restarts: fail closed
            self._handle = None
            raise Unavailable("admin sessions are being restarted; try again") from None

    async def revoke(self, token: str, expires_at: float) -> None:
        """End the session ``token`` (verified, expiring at ``expires_at``) on every replica."""
        nonce = session_nonce(token)
        await self._ask(lambda actor: actor.revoke.remote(nonce, expires_at))

    async def check(self, token: str, expires_at: float) -> None:
        """``AuthError`` if the session was logged out (or may have been: see the module)."""
        nonce = session_nonce(token)
        if await self._ask(lambda actor: actor.revoked.remote(nonce, expires_at)):
            raise AuthError("this admin session has ended (logged out); log in again")
