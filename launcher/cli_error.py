"""The one kind of failure the `herald` command shows as a line of its own."""

from __future__ import annotations


class CliError(Exception):
    """A failure the user can act on: shown as one ``herald: …`` line, exit ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
