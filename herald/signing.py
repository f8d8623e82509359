"""Body signatures Herald makes and checks: hex HMAC-SHA256 with a shared secret."""

from __future__ import annotations

import hashlib
import hmac


def sign_body(body: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of the raw body (requester callbacks, dev-mode fax webhooks)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes, signature: str, secret: str) -> bool:
    """Constant-time check of a hex signature made by ``sign_body``; ``signature`` may hold
    several, space-separated (a requester callback during a secret's rotation), any one will do."""
    expected = sign_body(body, secret)
    return any([hmac.compare_digest(expected, one.lower()) for one in signature.split()])
