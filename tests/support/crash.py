"""A process dying at a chosen call: the crash tests' one seam-breaker."""

from __future__ import annotations

from typing import Any

import pytest


class Crash(Exception):
    """Stands in for the process dying at that point."""


def crash_on_call(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, number: int) -> None:
    """Make the ``number``-th call of ``target.name`` raise Crash instead of running."""
    real = getattr(target, name)
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == number:
            raise Crash(f"killed at {name} #{number}")
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)
