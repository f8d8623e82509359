"""SMS arithmetic: which encoding a text needs and how many segments it costs; number masking.

Pure functions, no I/O. ``segments`` follows GSM 03.38 and the usual concatenation limits:

    GSM-7   160 septets in a single SMS, 153 per segment of a concatenated one; characters of
            the extension table (``^{}\\[~]|€`` and form feed) take two septets (ESC + char).
    UCS-2   anything outside GSM-7 switches the whole message to UCS-2, counted in UTF-16 code
            units: 70 in a single SMS, 67 per concatenated segment.

Segments are packed greedily without splitting an escape pair or a surrogate pair, as handsets
and carriers do, so a boundary character moves whole to the next segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")
_GSM7_SEPTETS = {char: 1 for char in GSM7_BASIC} | {char: 2 for char in GSM7_EXTENSION}

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How a text goes over the air: ``units`` are septets (GSM-7) or UTF-16 code units (UCS-2)."""

    encoding: Encoding
    segments: int
    units: int


def _pack(costs: list[int], single: int, multi: int) -> int:
    """Segments needed for these per-character costs; never splits one character's units."""
    if sum(costs) <= single:
        return 1
    count, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            count, used = count + 1, 0
        used += cost
    return count


def segments(text: str) -> SegmentInfo:
    """Encoding, segment count and length in encoding units of an SMS body.

    An empty text is one (empty) segment: sending it still costs one message.
    """
    try:
        costs = [_GSM7_SEPTETS[char] for char in text]
    except KeyError:
        costs = [2 if ord(char) > 0xFFFF else 1 for char in text]
        return SegmentInfo("UCS-2", _pack(costs, UCS2_SINGLE, UCS2_MULTI), sum(costs))
    return SegmentInfo("GSM-7", _pack(costs, GSM7_SINGLE, GSM7_MULTI), sum(costs))


def mask_number(number: str | None) -> str:
    """A phone number fit for logs: country code hint and last two digits only (``+1…00``)."""
    if not number:
        return "-"
    if len(number) <= 4:
        return "…"
    return f"{number[:2]}…{number[-2:]}"
