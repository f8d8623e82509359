"""API key authentication: ``Authorization: Bearer <key>`` → tenant, compared in constant time;
whose wrong keys a request counts towards (``client_of``); what it may send before it is
authenticated."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from starlette.requests import HTTPConnection

from herald.admin_session import client_key
from herald.errors import AuthError

#: The most a request may send before it is authenticated (the admin login, provider receipts):
#: a Twilio status callback or a fax webhook is a few hundred bytes to a few KiB. More is a 413
#: before reading it (``Content-Length``), or as soon as a chunked body goes past it.
UNAUTHENTICATED_BODY_LIMIT = 16 * 1024


def client_of(request: HTTPConnection) -> str:
    """The client a wrong operator or admin key is counted against: the connection's peer
    address (``herald.admin_session.client_key``). No ``X-Forwarded-For`` is read: Herald has
    no trusted-proxy setting, and a header anyone can write must not pick the counter."""
    return client_key(request.client.host if request.client else None)


class KeyRing:
    def __init__(self, keys: Mapping[str, str]) -> None:
        # Compare against every key, always, so timing says nothing about which one was close.
        self._keys = [(key.encode(), tenant) for key, tenant in keys.items()]

    def tenant_for(self, authorization: str | None) -> str:
        if not authorization:
            raise AuthError("missing Authorization: Bearer <key>")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization must be Bearer <key>")
        presented = token.strip().encode()
        found: str | None = None
        for key, tenant in self._keys:
            if hmac.compare_digest(key, presented):
                found = tenant
        if found is None:
            raise AuthError("invalid API key")
        return found
