"""Unit tests for herald.fax_document: a fax's text becomes exactly one readable PDF page."""

from __future__ import annotations

import re
import zlib

from herald.fax_document import ELLIPSIS, count_pages, render_pdf, sanitize


def _text_lines(pdf: bytes) -> list[str]:
    """The strings drawn on the page, decoded from the (single) content stream."""
    stream = re.search(rb"stream\r?\n(.*?)endstream", pdf, re.S)
    assert stream is not None
    content = zlib.decompress(stream.group(1)).decode("latin-1")
    drawn = re.findall(r"\((.*)\) Tj", content)
    return [line.encode("latin-1").decode("cp1252") for line in drawn]


def test_pdf_has_one_page_with_title_and_text() -> None:
    pdf = render_pdf("Invoice 42", "Your invoice is ready.")
    assert pdf.startswith(b"%PDF-")
    assert count_pages(pdf) == 1
    assert _text_lines(pdf) == ["Invoice 42", "Your invoice is ready."]


def test_output_is_deterministic() -> None:
    assert render_pdf("T", "same text") == render_pdf("T", "same text")


def test_text_wraps_to_the_page_width() -> None:
    lines = _text_lines(render_pdf(None, "word " * 100))
    assert len(lines) > 3
    assert all(len(line) < 120 for line in lines)


def test_long_text_stays_on_one_page_and_ends_with_ellipsis() -> None:
    pdf = render_pdf("Long", "lorem ipsum dolor sit amet " * 2000 + "THE-END")
    assert count_pages(pdf) == 1
    lines = _text_lines(pdf)
    assert lines[-1] == ELLIPSIS
    assert "THE-END" not in "".join(lines)


def test_one_huge_word_and_many_newlines_do_not_raise() -> None:
    assert count_pages(render_pdf("x" * 1000, "y" * 50_000)) == 1
    assert count_pages(render_pdf(None, "\n" * 5000)) == 1
    assert count_pages(render_pdf(None, "")) == 1


def test_non_latin_text_does_not_raise() -> None:
    text = "Emoji 😀, Łódź, ő, ﬁ, \u200b, NUL \x00, tab\t, € “quotes”"
    pdf = render_pdf("日本語のファクス", text)
    assert count_pages(pdf) == 1
    title, body = _text_lines(pdf)
    assert set(title) <= {"?", " "}
    assert "€ “quotes”" in body and "o, fi," in body


def test_sanitize_keeps_cp1252_and_reduces_the_rest() -> None:
    assert sanitize("café € …") == "café € …"
    assert sanitize("ő ﬁ") == "o fi"
    assert sanitize("a\u200bb") == "ab"
    assert sanitize("😀\x00\t") == "?     "
    assert sanitize("a\r\nb\rc") == "a\nb\nc"
