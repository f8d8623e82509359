"""API key authentication: ``Authorization: Bearer <key>`` → tenant, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from herald.errors import AuthError


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
