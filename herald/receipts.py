"""Provider receipts: a signed callback from a provider becomes a ``delivered``/``failed`` outcome.

Pure: no sockets, no clock. Intake passes what it received (URL, headers, body), the key of the
account that sent the message and, where a signature carries a time, ``now``; these functions
check the signature first and parse second, so nothing unsigned reaches the parser.

* **Twilio** ``StatusCallback``: form fields signed with ``X-Twilio-Signature`` (Twilio's own
  ``RequestValidator``). The tag travels in the callback URL (``?tag=``), which the signature
  covers; interim statuses (``queued``, ``sent``) are ``None``.
* **Fax** (Telnyx events ``fax.delivered`` / ``fax.failed``): Telnyx's own scheme. The webhook
  carries ``telnyx-timestamp`` (unix seconds) and ``telnyx-signature-ed25519`` (base64 ed25519
  signature of ``timestamp|raw body``), verified with the account's public key as the portal
  shows it (base64 of the raw 32 bytes); a timestamp more than ``tolerance`` seconds from ``now``
  is refused, so a recorded webhook cannot be replayed later. The signature does not cover the
  URL, so the tag travels in the signed body: the provider sends ``client_state`` =
  ``fax_client_state(tag)`` with each fax and Telnyx echoes it in ``data.payload.client_state``.
  A ``?tag=`` on the webhook URL is never read.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twilio.request_validator import RequestValidator

from herald.errors import AuthError, ConfigError, ValidationError
from herald.outcome import Outcome

__all__ = [
    "DEFAULT_TOLERANCE",
    "TELNYX_SIGNATURE_HEADER",
    "TELNYX_TIMESTAMP_HEADER",
    "fax_client_state",
    "fax_receipt",
    "twilio_receipt",
    "verify_telnyx_signature",
]

#: The headers Telnyx signs its webhooks with (HTTP header names are case-insensitive).
TELNYX_SIGNATURE_HEADER = "telnyx-signature-ed25519"
TELNYX_TIMESTAMP_HEADER = "telnyx-timestamp"
#: Telnyx's SDK default: a webhook older (or, here, newer) than this many seconds is refused.
DEFAULT_TOLERANCE = 300.0
_ED25519_KEY_BYTES, _ED25519_SIGNATURE_BYTES = 32, 64
_MAX_TIMESTAMP_DIGITS = 12  # unix seconds until the year 33658; more is not a timestamp
_TWILIO_FAILED = frozenset({"undelivered", "failed"})


def twilio_receipt(
    url: str,
    form: Mapping[str, str],
    signature: str | None,
    auth_token: str,
    *,
    provider: str = "twilio",
) -> Outcome | None:
    """Outcome of a Twilio ``StatusCallback``: delivered, failed, or None for interim statuses.

    ``url`` is the full URL Twilio requested (with the ``tag`` query it was given), ``form`` the
    posted fields, ``signature`` the ``X-Twilio-Signature`` header. Raises ``AuthError`` when
    the signature is missing or wrong and ``ValidationError`` when the URL carries no tag.
    """
    if not signature or not RequestValidator(auth_token).validate(url, form, signature):
        raise AuthError("Twilio status callback: missing or invalid X-Twilio-Signature")
    tags = parse_qs(urlsplit(url).query).get("tag")
    if not tags:
        raise ValidationError("Twilio status callback URL carries no tag", field="tag")
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    sid = form.get("MessageSid") or form.get("SmsSid")
    if status == "delivered":
        return Outcome(tags[-1], "delivered", provider, provider_id=sid, info={"status": status})
    if status in _TWILIO_FAILED:
        return Outcome(
            tags[-1], "failed", provider, provider_id=sid, error=f"Twilio status {status}",
            code=form.get("ErrorCode") or None, info={"status": status},
        )
    return None


def fax_client_state(tag: str) -> str:
    """The ``client_state`` a fax is sent with: base64 of the tag, as Telnyx requires."""
    return base64.b64encode(tag.encode()).decode("ascii")


@functools.lru_cache(maxsize=8)
def _telnyx_public_key(public_key: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(public_key.strip(), validate=True)
        if len(raw) != _ED25519_KEY_BYTES:
            raise ValueError(f"{len(raw)} bytes, not {_ED25519_KEY_BYTES}")
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as error:  # binascii.Error is a ValueError; never quote the value
        raise ConfigError("fax_public_key: not a base64 ed25519 public key") from error


def verify_telnyx_signature(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_key: str,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Raise ``AuthError`` unless Telnyx signed ``timestamp|body`` within ``tolerance`` of ``now``.

    ``signature`` and ``timestamp`` are the raw header values, whatever a sender put there: a
    missing, malformed (non-ASCII, not base64, wrong length, not decimal seconds), forged or
    stale value is an ``AuthError`` and nothing else. ``public_key`` is the account's key in
    base64; a bad one is a ``ConfigError`` (Herald's fault, not the sender's).
    """
    if not signature or not timestamp:
        raise AuthError(f"fax webhook without {TELNYX_SIGNATURE_HEADER} or {TELNYX_TIMESTAMP_HEADER}")
    key = _telnyx_public_key(public_key)
    # isascii() first: str.isdigit() also accepts non-ASCII digits such as "١".
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _MAX_TIMESTAMP_DIGITS):
        raise AuthError(f"fax webhook: {TELNYX_TIMESTAMP_HEADER} is not unix seconds")
    try:
        if not signature.isascii():
            raise ValueError("not ASCII")
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError as error:  # binascii.Error is a ValueError
        raise AuthError(f"fax webhook: {TELNYX_SIGNATURE_HEADER} is not base64") from error
    if len(raw_signature) != _ED25519_SIGNATURE_BYTES:
        raise AuthError(f"fax webhook: {TELNYX_SIGNATURE_HEADER} is not an ed25519 signature")
    try:
        key.verify(raw_signature, timestamp.encode("ascii") + b"|" + body)
    except InvalidSignature:
        raise AuthError("fax webhook signature does not match") from None
    # After the signature, so only an authentic webhook learns that it came too late.
    if abs(now - int(timestamp)) > tolerance:
        raise AuthError("fax webhook timestamp is outside the tolerance (replayed or clock skew)")


def fax_receipt(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_key: str,
    now: float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    provider: str = "telnyx",
) -> Outcome | None:
    """The outcome a Telnyx-signed fax webhook reports, for the tag in its signed ``client_state``.

    ``fax.delivered`` → ``delivered``; ``fax.failed`` → ``failed`` with ``code`` =
    ``failure_reason``; any other event (``fax.queued``, ``fax.sending.started``…) → ``None``.
    Raises ``AuthError`` as ``verify_telnyx_signature`` does, and ``ValidationError`` for a signed
    body that is not a fax event or whose final event carries no tag in ``client_state``.
    """
    verify_telnyx_signature(body, signature, timestamp, public_key, now, tolerance)
    event_type, payload = _fax_event(body)
    if event_type not in ("fax.delivered", "fax.failed"):
        return None
    tag = _tag_of(payload.get("client_state"))
    fax_id = payload.get("fax_id")
    fax_id = str(fax_id) if fax_id is not None else None
    if event_type == "fax.delivered":
        pages = payload.get("page_count")
        return Outcome(
            tag, "delivered", provider, provider_id=fax_id,
            info={"pages": pages} if pages is not None else {},
        )
    reason = str(payload.get("failure_reason") or "unknown")
    return Outcome(
        tag, "failed", provider, provider_id=fax_id, error=f"fax failed: {reason}", code=reason
    )


def _fax_event(body: bytes) -> tuple[str, dict[str, Any]]:
    """``(data.event_type, data.payload)`` of a Telnyx webhook body."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ValidationError("fax webhook is not JSON", field="data") from error
    event = document.get("data") if isinstance(document, dict) else None
    event_type = event.get("event_type") if isinstance(event, dict) else None
    payload = (event.get("payload") or {}) if isinstance(event, dict) else None
    if not isinstance(event_type, str) or not isinstance(payload, dict):
        raise ValidationError("fax webhook is not a fax event", field="data")
    return event_type, payload


def _tag_of(client_state: object) -> str:
    """The tag ``fax_client_state`` put in ``client_state``."""
    try:
        if not isinstance(client_state, str) or not client_state.isascii():
            raise ValueError("not an ASCII string")
        tag = base64.b64decode(client_state, validate=True).decode()
    except ValueError as error:  # so are binascii.Error and UnicodeDecodeError
        raise ValidationError(
            "fax webhook client_state is not a Herald tag", field="client_state"
        ) from error
    if not tag:
        raise ValidationError("fax webhook client_state is empty", field="client_state")
    return tag
