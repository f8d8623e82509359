"""Phone numbers, email addresses and SMS sender ids checked at intake, by libraries made for the job.

Pure functions: each takes the value and the dotted ``field`` it came from, returns the normalized
form, or raises ``ValidationError`` naming that field. Nothing here looks anything up on the network:
email addresses are checked for syntax only (never DNS), and phone numbers for being *possible*
(a known country code and a length that country uses), not *valid* (assigned): Twilio's test numbers
such as +15005550006 are possible but not assigned, and must pass.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from herald.errors import ValidationError

__all__ = ["E164_RE", "SENDER_ID_RE", "email_address", "phone_number", "sms_sender"]

#: The shape of an E.164 number: ``+``, a non-zero digit, at most 15 digits; nothing else, no CR/LF.
#: Only the shape: ``phone_number`` also asks whether such a number can exist.
E164_RE = re.compile(r"^\+[1-9][0-9]{1,14}\Z")
#: An alphanumeric SMS sender id (what carriers display instead of a number).
SENDER_ID_RE = re.compile(r"^[A-Za-z0-9 ]{1,11}\Z")

_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}
_POSSIBLE_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short for its country",
    phonenumbers.ValidationResult.TOO_LONG: "too long for its country",
    phonenumbers.ValidationResult.INVALID_LENGTH: "a length its country does not use",
}


def _no_crlf(value: str, field: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValidationError(f"{field}: must not contain CR or LF", field=field)


def phone_number(value: str, field: str) -> str:
    """``value`` as an E.164 string if it is E.164-shaped and a possible number; else ``ValidationError``."""
    if not isinstance(value, str) or not E164_RE.match(value):
        raise ValidationError(f"{field}: must be an E.164 number like +14155550100", field=field)
    ok, text = _phone(value)
    if not ok:
        raise ValidationError(f"{field}: not a possible phone number ({text})", field=field)
    return text


#: Parsing is most of what intake spends on an SMS; the same numbers come again and again.
@lru_cache(maxsize=65_536)
def _phone(value: str) -> tuple[bool, str]:
    """(True, the E.164 form) or (False, why not) for an E.164-shaped ``value``."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        return False, _PARSE_REASONS.get(exc.error_type, "not a number")
    if not phonenumbers.is_possible_number(parsed):
        result = phonenumbers.is_possible_number_with_reason(parsed)
        return False, _POSSIBLE_REASONS.get(result, "impossible length")
    return True, str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def email_address(value: str, field: str) -> str:
    """``value`` normalized if it is a bare email address (may be internationalized); else an error.

    Syntax only (``check_deliverability=False``: no DNS). Display names (``"Bob" <bob@x.com>``),
    quoted local parts and domain literals are refused.
    """
    if not isinstance(value, str):
        raise ValidationError(f"{field}: not an email address", field=field)
    _no_crlf(value, field)
    ok, text = _email(value)
    if not ok:
        raise ValidationError(f"{field}: not an email address ({text})", field=field)
    return text


@lru_cache(maxsize=65_536)
def _email(value: str) -> tuple[bool, str]:
    """(True, the normalized address) or (False, why not)."""
    try:
        checked = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=True,
            allow_display_name=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
        )
    except EmailNotValidError as exc:
        return False, str(exc)
    return True, str(checked.normalized)


def sms_sender(value: str, field: str) -> str:
    """An SMS ``from``: a possible E.164 number (normalized) or an alphanumeric sender id (as is)."""
    if isinstance(value, str) and E164_RE.match(value):
        return phone_number(value, field)
    if isinstance(value, str) and SENDER_ID_RE.match(value):
        return value
    raise ValidationError(f"{field}: E.164 number or sender id", field=field)
