"""Waiting on a condition with a deadline, where a test would otherwise sleep a fixed time and
then assert: the wait ends as soon as the condition holds, and fails naming what never came."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], what: str, timeout: float = 30.0, every: float = 0.05) -> T:
    """``condition()``'s first true answer, polled every ``every`` s; an assertion error naming
    ``what`` (and the last answer) once ``timeout`` s pass without one."""
    deadline = time.monotonic() + timeout
    while True:
        answer = condition()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"not within {timeout} s: {what} (last: {answer!r})"
        time.sleep(every)


async def until_async(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """The same inside an event loop, for state a task reaches without firing an event."""
    deadline = time.monotonic() + timeout
    while not condition():  # polls plain state: there is no event to wait on
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.005)
