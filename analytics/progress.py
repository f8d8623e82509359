"""A plain-text progress bar on stderr for the report's long steps (no dependency, no colours).

``[#########           ]  45% reading sms 2026-01-03``, redrawn in place with ``\\r`` and only
when the text changes, so a slow terminal or a log file sees a few dozen writes, not thousands.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

WIDTH = 24


class Progress:
    """Counts steps as they are announced (``expect``) and run (``step``)."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.total = 0
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        # A bar redrawn with \r is for a person at a terminal; a log file gets the last line only.
        self._enabled = enabled and (stream is not None or sys.stderr.isatty())
        self._shown = ""

    def expect(self, steps: int) -> None:
        """``steps`` more steps are coming."""
        self.total += steps

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        """Show ``label`` while the step runs; count it when it ends."""
        self._show(label)
        yield
        self.done += 1
        self._show(label)

    def finish(self, label: str = "done") -> None:
        """Show 100 % and end the line, so whatever is printed next starts on its own."""
        self.done = self.total = max(self.total, 1)
        self._show(label)
        if self._enabled and self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = ""

    def _show(self, label: str) -> None:
        if not self._enabled:
            return
        fraction = min(self.done / self.total, 1.0) if self.total else 0.0
        filled = round(fraction * WIDTH)
        text = f"[{'#' * filled}{' ' * (WIDTH - filled)}] {fraction:4.0%} {label}"
        if text == self._shown:
            return
        # Pad with blanks so a shorter label wipes the end of a longer one.
        self._stream.write("\r" + text.ljust(len(self._shown)))
        self._stream.flush()
        self._shown = text


#: For callers that want no bar (tests, library use).
def silent() -> Progress:
    return Progress(enabled=False)
