"""Channels and notification types: ``type`` is ``<CATEGORY>_<CHANNEL>``."""

from __future__ import annotations

import enum
import re

from herald.errors import ValidationError


class Channel(str, enum.Enum):
    BROWSER = "BROWSER"
    SMS = "SMS"
    EMAIL = "EMAIL"
    FAX = "FAX"


_TYPE_RE = re.compile(r"^([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)_(BROWSER|SMS|EMAIL|FAX)$")


def parse_type(notification_type: str) -> tuple[str, Channel]:
    """Split ``CM_BROWSER`` into (``CM``, Channel.BROWSER); raise ValidationError otherwise."""
    match = _TYPE_RE.fullmatch(notification_type)
    if match is None:
        raise ValidationError(
            "type must be <CATEGORY>_<CHANNEL> with CHANNEL one of BROWSER, SMS, EMAIL, FAX",
            field="type",
        )
    return match.group(1), Channel(match.group(2))
