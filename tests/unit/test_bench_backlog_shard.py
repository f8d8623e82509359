"""``bench.backlog_shard``: one shard alone, its memory per queued and its speed, on small runs."""

from __future__ import annotations

import re

from bench.backlog_shard import memory, speed


def test_memory_reads_rss_after_a_warm_up_at_the_window_half_way_and_the_end() -> None:
    first, second = memory(queued=4_000, window=2_000)
    assert "window 2,000, 1,000 -> 4,000 queued" in first
    assert re.search(r"-?\d+ B per queued; -?\d+ B per record of the window", second)


def test_speed_drains_what_it_enqueued_beyond_the_window_too() -> None:
    for storage in ("memory", "sqlite"):
        [line] = speed(queued=3_000, window=1_000, rounds=1, store=storage)
        assert f"one shard on {storage}, window 1,000, 3,000 queued" in line
        assert re.search(r"enqueue\+flush [\d.]+ µs, lease\+ack\+flush [\d.]+ µs", line)
