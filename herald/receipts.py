"""Provider receipts: a signed callback from a provider becomes a ``delivered``/``failed`` outcome.

Pure: no sockets, no clock. Intake passes what it received (URL, headers, body) and the secret of
the account that sent the message; these functions check the signature first and parse second,
so nothing unsigned reaches the parser.

* **Twilio** ``StatusCallback``: form fields signed with ``X-Twilio-Signature`` (Twilio's own
  ``RequestValidator``). The tag travels in the callback URL (``?tag=``), which the signature
  covers; interim statuses (``queued``, ``sent``) are ``None``.
* **Fax** (Telnyx-shaped events ``fax.delivered`` / ``fax.failed``): signed with
  ``X-Herald-Fax-Signature`` = hex HMAC-SHA256 of the raw body (``herald.signing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

import orjson
from twilio.request_validator import RequestValidator

from herald.errors import AuthError, ValidationError
from herald.outcome import Outcome
from herald.signing import sign_body, signature_matches

__all__ = [
    "FAX_SIGNATURE_HEADER",
    "fax_receipt",
    "sign_fax_webhook",
    "twilio_receipt",
    "verify_fax_signature",
]

#: The header the fax provider signs its webhooks with.
FAX_SIGNATURE_HEADER = "X-Herald-Fax-Signature"
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


#: The value of ``X-Herald-Fax-Signature``: hex HMAC-SHA256 of the raw body.
sign_fax_webhook = sign_body


def verify_fax_signature(body: bytes, signature: str | None, secret: str) -> None:
    """Raise ``AuthError`` unless ``signature`` authenticates ``body``."""
    if not signature:
        raise AuthError("fax webhook without signature")
    if not signature_matches(body, signature, secret):
        raise AuthError("fax webhook signature does not match")


def fax_receipt(
    tag: str, body: bytes, signature: str | None, secret: str, provider: str = "telnyx"
) -> Outcome | None:
    """The outcome a signed fax webhook reports for ``tag`` (from ``?tag=`` of its URL).

    ``fax.delivered`` → ``delivered``; ``fax.failed`` → ``failed`` with ``code`` =
    ``failure_reason``; any other event (``fax.queued``, ``fax.sending.started``…) → ``None``.
    Raises ``AuthError`` for a missing or wrong signature and ``ValidationError`` for a signed
    body that is not a Telnyx-shaped event.
    """
    verify_fax_signature(body, signature, secret)
    try:
        event = orjson.loads(body)["data"]
        event_type = event["event_type"]
        payload = event.get("payload") or {}
        if not isinstance(payload, dict):
            raise TypeError("payload is not an object")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ValidationError("fax webhook is not a fax event", field="data") from error
    fax_id = payload.get("fax_id")
    if event_type == "fax.delivered":
        pages = payload.get("page_count")
        return Outcome(
            tag, "delivered", provider, provider_id=fax_id,
            info={"pages": pages} if pages is not None else {},
        )
    if event_type == "fax.failed":
        reason = str(payload.get("failure_reason") or "unknown")
        return Outcome(
            tag, "failed", provider, provider_id=fax_id, error=f"fax failed: {reason}", code=reason
        )
    return None
