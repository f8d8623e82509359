"""docs/configuration.md is generated from the settings' docs: every setting has one, and the file
is what ``python -m herald.config_docs`` writes today (``make docs`` rewrites it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from herald.config_docs import SECTIONS, render, undocumented
from herald.settings import Settings

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_has_a_doc() -> None:
    assert undocumented(Settings) == []


def test_the_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text() == render(), (
        "docs/configuration.md is stale: run `make docs` (python -m herald.config_docs)")


def test_the_reference_names_every_variable_with_its_default() -> None:
    text = render()
    for name in Settings.model_fields:
        assert f"| `HERALD_{name.upper()}` |" in text
    assert "| `HERALD_POOLS` | `email=1,sms=1,browser=1,fax=0,webhook=0` |" in text
    assert "| `HERALD_RETRY_CAP_SECONDS` | `300` |" in text
    assert "| `HERALD_SMTP_URL` | unset |" in text


def test_a_reference_to_another_setting_names_its_variable() -> None:
    assert "(fair shares as for `HERALD_QUEUE_LIMIT`)" in render()


def test_every_section_starts_at_a_setting_and_the_first_opens_one() -> None:
    assert set(SECTIONS) <= set(Settings.model_fields)
    assert next(iter(Settings.model_fields)) in SECTIONS


class _Undocumented(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    documented: int = 1
    """Has its doc."""
    bare: int = 2


def test_a_setting_without_a_doc_stops_the_generator() -> None:
    with pytest.raises(ValueError, match=r"settings without a doc: bare$"):
        render(_Undocumented, {"documented": "All"})
