"""SMS segment arithmetic: GSM-7 and UCS-2 limits, extension characters, pairs never split."""

from __future__ import annotations

import pytest

from herald.sms import SegmentInfo, mask_number, segments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SegmentInfo("GSM-7", 1, 0)),
        ("a" * 160, SegmentInfo("GSM-7", 1, 160)),
        ("a" * 161, SegmentInfo("GSM-7", 2, 161)),
        ("a" * 153 * 2, SegmentInfo("GSM-7", 2, 306)),
        ("a" * (153 * 2 + 1), SegmentInfo("GSM-7", 3, 307)),
        ("Ça coute 5 £ à Zürich", SegmentInfo("GSM-7", 1, 21)),
    ],
)
def test_gsm7_limits(text: str, expected: SegmentInfo) -> None:
    assert segments(text) == expected


def test_extension_characters_count_double() -> None:
    assert segments("€" * 80) == SegmentInfo("GSM-7", 1, 160)
    assert segments("€" * 80 + "a") == SegmentInfo("GSM-7", 2, 161)
    assert segments("{}[]~|^\\\f").units == 18


def test_escape_pair_is_not_split_across_segments() -> None:
    # 152 + 2 + 152 septets = 306 = 2 * 153, but the € cannot straddle the first boundary.
    assert segments("a" * 152 + "€" + "a" * 152) == SegmentInfo("GSM-7", 3, 306)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ж" * 70, SegmentInfo("UCS-2", 1, 70)),
        ("ж" * 71, SegmentInfo("UCS-2", 2, 71)),
        ("😀" * 35, SegmentInfo("UCS-2", 1, 70)),
        ("😀" * 35 + "a", SegmentInfo("UCS-2", 2, 71)),
        ("a" * 67 * 2, SegmentInfo("GSM-7", 1, 134)),
        ("é" * 66 + "ж" * 68, SegmentInfo("UCS-2", 2, 134)),
    ],
)
def test_ucs2_limits(text: str, expected: SegmentInfo) -> None:
    assert segments(text) == expected


def test_one_non_gsm_character_switches_the_whole_text() -> None:
    assert segments("a" * 100 + "ж").encoding == "UCS-2"
    assert segments("a" * 100 + "ж").segments == 2


def test_surrogate_pair_is_not_split_across_segments() -> None:
    # 66 + 2 + 66 code units = 134 = 2 * 67, but the emoji cannot straddle the boundary.
    assert segments("ж" * 66 + "😀" + "ж" * 66) == SegmentInfo("UCS-2", 3, 134)


def test_mask_number_keeps_only_a_hint() -> None:
    assert mask_number("+14155550100") == "+1…00"
    assert "4155550" not in mask_number("+14155550100")
    assert mask_number(None) == "-"
