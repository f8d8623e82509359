"""One-click unsubscribe links (RFC 8058): signed tokens naming a user's category, and the POST.

Every email carries ``List-Unsubscribe: <{public URL}/v1/unsubscribe/{token}>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``; a mailbox provider (or the user, through
the confirmation page) POSTs ``List-Unsubscribe=One-Click`` there and that user's category is
turned off for email. The token is the only credential, so it is signed.

Format: ``u1.<payload>.<signature>``, all base64url without padding (so a token is one URL path
segment): ``payload`` is the compact JSON ``[tenant, uid, category, issued_at]`` and
``signature`` HMAC-SHA256 over ``u1.<payload>`` with the key ``signing_key`` derives. As in
``herald.browser_tokens``, the signature is checked (in constant time) before the payload is
parsed. A token does not expire by default: a mailbox provider may POST weeks after the mail
was sent, and the law asks that the link keep working for a while. ``issued_at`` (the time the
notification was accepted, so every attempt's email carries the same token) lets a caller refuse
tokens older than ``max_age`` if it ever must. Pure: no clock, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qsl

from herald.errors import NotFound

__all__ = ["ONE_CLICK_FIELD", "ONE_CLICK_VALUE", "UNSUBSCRIBE_PATH", "InvalidToken", "Unsubscribe",
           "UnsubscribeLinks", "is_one_click", "mint_token", "signing_key", "verify_token"]

VERSION = "u1"
#: Where the links point, under the public URL (``serve/unsubscribe.py`` serves it).
UNSUBSCRIBE_PATH = "/v1/unsubscribe/"
#: The POST body RFC 8058 prescribes, as a form field.
ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"
#: Longer than any token we mint; refuses oversized input before any work is done.
MAX_TOKEN_LENGTH = 2048
#: What the key is for: the stored secret is only ever used through this label, so a secret
#: that also serves (or once served) another purpose cannot sign an unsubscribe token.
_PURPOSE = b"herald/unsubscribe-token/v1"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_MALFORMED = "no such unsubscribe link"


class InvalidToken(NotFound):
    """A token that is malformed, forged or altered: to the client, a link that does not exist."""


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """What a verified token asks: turn ``category`` off for ``uid`` of ``tenant``."""

    tenant: str
    uid: str
    category: str
    #: Epoch seconds the notification the link came with was accepted.
    issued_at: int


def signing_key(secret: str) -> bytes:
    """The key tokens are signed with, derived from the deployment's unsubscribe secret."""
    if not secret:  # an empty key would make every token forgeable by anyone who guesses it
        raise ValueError("the unsubscribe secret must be non-empty")
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def mint_token(key: bytes, tenant: str, uid: str, category: str, issued_at: float) -> str:
    """A token asking to turn ``category`` off for ``(tenant, uid)``."""
    if not (tenant and uid and category):
        raise ValueError("tenant, uid and category must be non-empty")
    claims = json.dumps([tenant, uid, category, int(issued_at)], separators=(",", ":"))
    signing_input = f"{VERSION}.{_b64encode(claims.encode())}"
    return f"{signing_input}.{_b64encode(_sign(key, signing_input))}"


def verify_token(key: bytes, token: str, now: float | None = None,
                 max_age: float | None = None) -> Unsubscribe:
    """What ``token`` asks, or ``InvalidToken`` (a 404) if it is malformed, forged, altered, or
    (only when ``max_age`` is given) issued more than ``max_age`` seconds before ``now``."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken(_MALFORMED)
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise InvalidToken(_MALFORMED)
    payload, signature = _b64decode(parts[1]), _b64decode(parts[2])  # both strictly ASCII now
    if not hmac.compare_digest(signature, _sign(key, f"{parts[0]}.{parts[1]}")):
        raise InvalidToken(_MALFORMED)
    request = _parse_claims(payload)
    if max_age is not None:
        if now is None:
            raise ValueError("max_age needs now")
        if now - request.issued_at > max_age:
            raise InvalidToken("this unsubscribe link has expired")
    return request


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    """Makes the ``List-Unsubscribe`` URL of each email (the channel actor holds one)."""

    key: bytes
    #: The public URL (``Settings.base_url``), without a trailing slash.
    base_url: str

    @classmethod
    def of(cls, secret: str | None, base_url: str) -> UnsubscribeLinks | None:
        """Links for a deployment; None without a secret (nothing could verify them)."""
        return cls(signing_key(secret), base_url.rstrip("/")) if secret else None

    def url(self, tenant: str, uid: str, category: str, issued_at: float) -> str:
        return self.base_url + UNSUBSCRIBE_PATH + mint_token(self.key, tenant, uid, category,
                                                             issued_at)


def is_one_click(content_type: str | None, body: bytes) -> bool:
    """Whether a POST body says ``List-Unsubscribe=One-Click`` (RFC 8058 3.2): as a form, either
    ``application/x-www-form-urlencoded`` (the confirmation page, most providers) or
    ``multipart/form-data`` (the RFC's own example)."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media == "multipart/form-data":
        return _multipart_field(content_type or "", body) == ONE_CLICK_VALUE
    if media not in ("", "application/x-www-form-urlencoded"):
        return False
    try:
        fields = parse_qsl(body.decode("ascii"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return False
    return (ONE_CLICK_FIELD, ONE_CLICK_VALUE) in fields


def _multipart_field(content_type: str, body: bytes) -> str | None:
    """The ``List-Unsubscribe`` field of a small multipart form, read with the email parser."""
    if "\r" in content_type or "\n" in content_type:
        return None
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():  # type: ignore[attr-defined]
        if part.get_param("name", header="content-disposition") == ONE_CLICK_FIELD:
            content = part.get_payload(decode=True)
            return content.decode("ascii", "replace").strip() if isinstance(content, bytes) else None
    return None


def _parse_claims(raw: bytes) -> Unsubscribe:
    try:
        claims = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidToken(_MALFORMED) from exc
    if not isinstance(claims, list) or len(claims) != 4:
        raise InvalidToken(_MALFORMED)
    tenant, uid, category, issued_at = claims
    if not all(isinstance(text, str) and text for text in (tenant, uid, category)):
        raise InvalidToken(_MALFORMED)
    if isinstance(issued_at, bool) or not isinstance(issued_at, int):  # bool is an int
        raise InvalidToken(_MALFORMED)
    return Unsubscribe(tenant, uid, category, issued_at)


def _sign(key: bytes, signing_input: str) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict, canonical base64url without padding: the stdlib decoder would skip stray
    characters, and ignores the spare low bits of the last one (``...Y`` and ``...Z`` would
    both pass), so what it decoded must encode back to ``text`` exactly."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise InvalidToken(_MALFORMED)
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidToken(_MALFORMED) from exc
    if _b64encode(data) != text:
        raise InvalidToken(_MALFORMED)
    return data
