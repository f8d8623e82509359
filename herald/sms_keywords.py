"""Inbound SMS opt-out keywords (the US carriers' and Twilio's Advanced Opt-Out lists).

A text whose whole body, trimmed and case-folded, is one of ``STOP_WORDS`` opts its sender out of
messages from the number it was sent to; one of ``START_WORDS`` opts back in. Anything else is
not a keyword (a sentence containing "stop" is a message, not an opt-out).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from twilio.request_validator import RequestValidator

from herald.errors import AuthError, ValidationError

#: Twilio's error for a send to a number that opted out of the sender ("unsubscribed recipient").
TWILIO_UNSUBSCRIBED = "21610"
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})


class Keyword(enum.Enum):
    STOP = "stop"
    START = "start"


def keyword(body: str) -> Keyword | None:
    word = body.strip().upper()
    if word in STOP_WORDS:
        return Keyword.STOP
    if word in START_WORDS:
        return Keyword.START
    return None


def inbound_opt_out(url: str, form: Mapping[str, str], signature: str | None,
                    auth_token: str) -> tuple[Keyword, str, str] | None:
    """A Twilio inbound-message webhook, verified with ``X-Twilio-Signature``: (keyword, the
    texter's number, the number texted) for an opt-out or opt-in, else None. Raises
    ``AuthError`` for a missing or wrong signature, ``ValidationError`` without From/To."""
    if not signature or not RequestValidator(auth_token).validate(url, form, signature):
        raise AuthError("Twilio inbound message: missing or invalid X-Twilio-Signature")
    word = keyword(form.get("Body", ""))
    if word is None:
        return None
    texter, texted = form.get("From", "").strip(), form.get("To", "").strip()
    if not texter or not texted:
        raise ValidationError("Twilio inbound message without From or To", field="From")
    return word, texter, texted
