"""Bounce and complaint messages as mail systems send them (tests/fixtures/bounces/*.eml)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
#: The tag every sample's returned email carries (a ``make_tag`` of shard 2).
TAG = "0002b7e4-5c1d-4f3a-9e2b-6d8c1a0f4e57"
#: The domain of the samples' return paths.
DOMAIN = "bounces.example.org"


def sample(name: str) -> bytes:
    """The sample ``name`` (without ``.eml``), with CRLF line ends as SMTP carries it."""
    return (FIXTURES / f"{name}.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
