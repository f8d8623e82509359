"""Contact details partly masked, for what operators see: enough to recognise, not to copy.

An email address keeps its first character and its domain (``b…@example.com``: which provider
refuses it matters when diagnosing); a phone or fax number keeps a country-code hint and its
last two digits (``+1…00``, ``herald.sms.mask_number``). ``mask_payload`` masks the payload
fields that hold contacts and, anywhere else in the payload (``details.vars``…), any string
that is an address or a number on its own.
"""

from __future__ import annotations

import re
from typing import Any

from herald.sms import mask_number

__all__ = ["CONTACT_FIELDS", "mask_contact", "mask_email", "mask_payload"]

#: Payload keys whose values are contact details, wherever they appear.
CONTACT_FIELDS = frozenset({"email", "phone", "fax", "to", "reply_to", "cc", "bcc", "mobile"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: A phone number on its own: optional +, digits with the usual separators, 7 digits or more.
_PHONE = re.compile(r"^\+?[\d\s().-]{7,32}$")


def mask_email(address: str) -> str:
    """``bob@example.com`` → ``b…@example.com``."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "…"
    return f"{local[0]}…@{domain}"


def mask_contact(value: str) -> str:
    """An email address or a number, masked; anything else shown as ``…``."""
    text = value.strip()
    if "@" in text:
        return mask_email(text)
    if _PHONE.match(text) and sum(c.isdigit() for c in text) >= 7:
        return mask_number(re.sub(r"[^\d+]", "", text))
    return "…" if text else text


def _looks_like_contact(value: str) -> bool:
    """An address, or an international number (a ``+`` first: a date is not a number)."""
    text = value.strip()
    return bool(_EMAIL.match(text)) or (
        text.startswith("+") and bool(_PHONE.match(text)) and sum(c.isdigit() for c in text) >= 7)


def mask_payload(value: Any, contact: bool = False) -> Any:
    """A copy of ``value`` (a payload, or any part of one) with contact details masked."""
    if isinstance(value, dict):
        return {key: mask_payload(item, contact=str(key).lower() in CONTACT_FIELDS)
                for key, item in value.items()}
    if isinstance(value, list):
        return [mask_payload(item, contact) for item in value]
    if isinstance(value, str) and (contact or _looks_like_contact(value)):
        return mask_contact(value)
    return value
