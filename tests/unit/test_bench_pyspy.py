"""Reading py-spy's collapsed stacks: where the samples were."""

from __future__ import annotations

import pytest

from bench.pyspy import summarize

COLLAPSED = """\
process 1:"ray::ChannelActor";run (asyncio/events.py:80);send (websockets/asyncio/connection.py:10) 6
process 1:"ray::ChannelActor";run (asyncio/events.py:84);loads (json/__init__.py:346) 3
process 1:"ray::ChannelActor";run (asyncio/events.py:80);send (websockets/asyncio/connection.py:12) 1
not a sample line
"""


def test_self_and_inclusive_time_merge_lines_of_one_function() -> None:
    summary = summarize(COLLAPSED, "gateway")
    assert summary.samples == 10
    top = summary.self_time[0]
    assert (top.frame, top.samples, top.share) == ("send (websockets/asyncio/connection.py)", 7, 0.7)
    inclusive = {f.frame: f.share for f in summary.inclusive}
    assert inclusive["run (asyncio/events.py)"] == pytest.approx(1.0)
    assert "gateway: 10 samples" in summary.describe()


def test_no_samples_is_an_empty_summary() -> None:
    assert summarize("", "idle").samples == 0
