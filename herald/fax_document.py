"""Render a fax's text as a one-page PDF (fpdf2, core Helvetica), and count a PDF's pages.

Pure functions, no I/O. Core PDF fonts only know WinAnsi (cp1252), so text is sanitised first:
characters that cp1252 cannot encode are reduced to their base letter when they have one
(``ő`` → ``o``) and replaced by ``?`` otherwise, so fpdf never raises. Text that would overflow
the page is cut and ends with a line holding ``…``. The output is deterministic: the creation
date is fixed, and fpdf2 derives the file ID from the content.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

from fpdf import FPDF
from fpdf.enums import XPos, YPos

__all__ = ["ELLIPSIS", "count_pages", "render_pdf", "sanitize"]

ELLIPSIS = "…"
_ENCODING = "cp1252"  # what fpdf2's core fonts are declared with (/WinAnsiEncoding)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # fixed creation date: same input, same bytes
_MARGIN_MM = 20.0
_TITLE_PT, _BODY_PT = 16, 11
_LINE_FACTOR = 1.35  # line height as a multiple of the font size
_MAX_TITLE_LINES = 3
_MAX_CHARS = 20_000  # far more than a page holds; bounds the work on huge input
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PAGE_OBJECT = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def sanitize(text: str) -> str:
    """Text that Helvetica (cp1252) can show: tabs expanded, controls and unknown chars replaced."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = _CONTROL.sub(" ", text)
    return "".join(_encodable(char) for char in text)


def _encodable(char: str) -> str:
    try:
        char.encode(_ENCODING)
        return char
    except UnicodeEncodeError:
        pass
    if unicodedata.category(char) == "Cf":  # invisible formatting (zero-width space, BOM…)
        return ""
    base = "".join(
        c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
    )
    try:
        base.encode(_ENCODING)
    except UnicodeEncodeError:
        return "?"
    return base or "?"


def _line_height(font_pt: int) -> float:
    return font_pt * _LINE_FACTOR * 25.4 / 72  # points → millimetres


def _wrap(pdf: FPDF, text: str, limit: int) -> list[str]:
    """Greedy word wrap at the current font; stops after ``limit + 1`` lines (enough to cut)."""
    width = pdf.epw - 2 * pdf.c_margin
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if pdf.get_string_width(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = word
            while pdf.get_string_width(line) > width:  # a word wider than the page: cut it
                if len(lines) > limit:
                    return lines
                cut = _longest_prefix(pdf, line, width)
                lines.append(line[:cut])
                line = line[cut:]
            if len(lines) > limit:
                return lines
        lines.append(line)
        if len(lines) > limit:
            return lines
    return lines


def _longest_prefix(pdf: FPDF, word: str, width: float) -> int:
    low, high = 1, len(word)
    while low < high:
        mid = (low + high + 1) // 2
        if pdf.get_string_width(word[:mid]) <= width:
            low = mid
        else:
            high = mid - 1
    return low


def _fit(lines: list[str], limit: int) -> list[str]:
    """At most ``limit`` lines; when cut, the last one is the ellipsis."""
    if len(lines) <= limit:
        return lines
    return [*lines[: max(limit - 1, 0)], ELLIPSIS] if limit > 0 else []


def _write(pdf: FPDF, lines: list[str], height: float) -> None:
    for line in lines:
        pdf.cell(w=0, h=height, text=line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def render_pdf(title: str | None, text: str) -> bytes:
    """One A4 page: an optional bold title, then the text wrapped, cut with ``…`` if too long."""
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.core_fonts_encoding = _ENCODING
    pdf.set_creation_date(_EPOCH)
    pdf.set_producer("Herald")
    pdf.set_margins(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM)
    pdf.set_auto_page_break(False)  # one page, always: overflow is cut below, never paged
    pdf.add_page()
    bottom = pdf.h - _MARGIN_MM

    if title and title.strip():
        pdf.set_font("Helvetica", style="B", size=_TITLE_PT)
        height = _line_height(_TITLE_PT)
        lines = _wrap(pdf, sanitize(title.strip()), _MAX_TITLE_LINES)
        _write(pdf, _fit(lines, _MAX_TITLE_LINES), height)
        pdf.ln(height / 2)

    pdf.set_font("Helvetica", size=_BODY_PT)
    height = _line_height(_BODY_PT)
    room = int((bottom - pdf.get_y()) // height)
    lines = _wrap(pdf, sanitize(text[:_MAX_CHARS]), room)
    if len(text) > _MAX_CHARS:
        lines.append(ELLIPSIS)
    _write(pdf, _fit(lines, room), height)
    return bytes(pdf.output())


def count_pages(pdf: bytes) -> int:
    """Page objects in a PDF (0 if none are visible, e.g. hidden in compressed object streams)."""
    return len(_PAGE_OBJECT.findall(pdf))
