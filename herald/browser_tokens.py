"""Browser tokens: short-lived, HMAC-signed proofs of who a WebSocket connection belongs to.

Format: ``v1.<payload>.<signature>`` where ``payload`` is base64url (no padding) of the compact
JSON ``{"t": tenant, "u": uid, "e": expires_at}`` and ``signature`` is base64url (no padding) of
HMAC-SHA256 over ``v1.<payload>`` with the service's browser secret. Pure: no clock, no I/O.
The signature is checked (in constant time) before the payload is parsed, so nothing an attacker
writes reaches the JSON parser unless it was signed with our secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass

from herald.errors import AuthError

__all__ = ["BrowserIdentity", "mint_token", "verify_token"]

VERSION = "v1"
#: Longer than any token we mint; refuses oversized input before any work is done.
MAX_TOKEN_LENGTH = 4096
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class BrowserIdentity:
    """The user a verified token speaks for, and until when."""

    tenant: str
    uid: str
    expires_at: float


def mint_token(secret: bytes, tenant: str, uid: str, ttl: float, now: float) -> tuple[str, float]:
    """A token for ``(tenant, uid)`` valid for ``ttl`` seconds from ``now``: (token, expires_at)."""
    _check_secret(secret)
    if not tenant or not uid:
        raise ValueError("tenant and uid must be non-empty")
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError("ttl must be a positive number of seconds")
    expires_at = now + ttl
    claims = json.dumps({"t": tenant, "u": uid, "e": expires_at}, separators=(",", ":"))
    signing_input = f"{VERSION}.{_b64encode(claims.encode())}"
    return f"{signing_input}.{_b64encode(_sign(secret, signing_input))}", expires_at


def verify_token(secret: bytes, token: str, now: float) -> BrowserIdentity:
    """The identity in ``token``, or ``AuthError`` if it is malformed, forged or expired."""
    _check_secret(secret)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise AuthError("malformed browser token")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise AuthError("malformed browser token")
    payload, signature = _b64decode(parts[1]), _b64decode(parts[2])  # both strictly ASCII now
    if not hmac.compare_digest(signature, _sign(secret, f"{parts[0]}.{parts[1]}")):
        raise AuthError("invalid browser token signature")
    identity = _parse_claims(payload)
    if now >= identity.expires_at:
        raise AuthError("browser token expired")
    return identity


def _parse_claims(raw: bytes) -> BrowserIdentity:
    try:
        claims = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise AuthError("malformed browser token") from exc
    if not isinstance(claims, dict):
        raise AuthError("malformed browser token")
    tenant, uid, expires_at = claims.get("t"), claims.get("u"), claims.get("e")
    if not (isinstance(tenant, str) and tenant and isinstance(uid, str) and uid):
        raise AuthError("malformed browser token")
    # bool is an int subclass: refuse it explicitly, and refuse NaN / infinities.
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
        raise AuthError("malformed browser token")
    if not math.isfinite(expires_at):
        raise AuthError("malformed browser token")
    return BrowserIdentity(tenant, uid, float(expires_at))


def _sign(secret: bytes, signing_input: str) -> bytes:
    return hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()


def _check_secret(secret: bytes) -> None:
    # An empty key would make every token forgeable by anyone who guesses it is empty.
    if not isinstance(secret, bytes) or not secret:
        raise ValueError("the browser token secret must be non-empty bytes")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64url without padding: the stdlib decoder would skip stray characters."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise AuthError("malformed browser token")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AuthError("malformed browser token") from exc
