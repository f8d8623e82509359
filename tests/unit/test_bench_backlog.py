"""The pure parts of ``bench.backlog``: its figures' arithmetic (``bench.backlog_figures``), the
per-role sums, what it reads from ``/proc`` and the payloads it posts."""

from __future__ import annotations

import os

import pytest

from bench.backlog import payload
from bench.backlog_figures import IntakeFigure, LatencyFigure, MemoryFigure, Sample, by_role, sample, total
from bench.cpu import cpu_of

MIB = 2**20


def test_memory_per_notification_over_the_fill_and_its_second_half() -> None:
    shards = [Sample("sum", 400 * MIB, 300 * MIB, 0), Sample("sum", 500 * MIB, 380 * MIB, 0),
              Sample("sum", 550 * MIB, 420 * MIB, 0)]
    figure = MemoryFigure([2_000, 502_000, 1_002_000], shards,
                          {"QueueActor (shard)": 150.0 * MIB, "raylet": 1.0 * MIB}, "1.00 1.00 1.00")
    assert figure.per_notification("rss") == pytest.approx(150 * MIB / 1_000_000)
    assert figure.per_notification("pss") == pytest.approx(120 * MIB / 1_000_000)
    assert figure.per_notification("rss", marginal=True) == pytest.approx(50 * MIB / 500_000)
    first, second = figure.lines()
    assert "1,002,000 queued" in first and "157 B/notification" in first
    # 10 M: 400 MiB before + 10 M x 105 B (the second half's cost) = 1.37 GiB
    assert "1.37 GiB" in second and "grew 151 MiB RSS: QueueActor (shard) +150" in second
    assert "raylet" not in second  # under 5 MiB: not worth a mention


def test_by_role_sums_what_each_role_added_and_counts_gone_processes_as_zero() -> None:
    before = {1: Sample("shard", 100, 90, 1.0), 2: Sample("shard", 100, 90, 2.0),
              3: Sample("x", 50, 40, 0.5)}
    after = {1: Sample("shard", 150, 120, 1.5), 2: Sample("shard", 130, 100, 2.5),
             4: Sample("x", 70, 60, 0.1)}
    assert by_role(before, after, "rss") == {"shard": 80, "x": 20}
    assert by_role(before, after, "cpu") == pytest.approx({"shard": 1.0, "x": -0.4})
    assert total(after, [1, 2, 9]) == Sample("sum", 280, 220, 4.0)


def test_intake_cpu_roles_biggest_first() -> None:
    figure = IntakeFigure(4_000.0, [5_000.0, 3_000.0, 4_000.0], 3_500.0,
                          {"Serve replica": 80.0, "QueueActor (shard)": 90.0, "raylet": 0.4}, "2 2 2")
    assert "SQLite FULL: median 4,000/s (rounds 5,000, 3,000, 4,000; rest of the fill 3,500" \
        in figure.lines()[0]
    assert figure.lines()[1] == "  CPU ms per 1,000 accepted: QueueActor (shard) 90, Serve replica 80"


def test_latency_percentiles_in_milliseconds() -> None:
    line = LatencyFigure("email", 10.0, [i / 1000 for i in range(1, 101)], "max 20/s", "1 1 1").lines()[0]
    assert "10/s x 100: p50 50 ms, p95 95 ms, p99 99 ms (max 20/s)" in line


def test_reads_this_process_and_nothing_for_one_that_is_gone() -> None:
    gone = 2**22 + 1  # above Linux's largest pid
    (mine,) = sample([os.getpid(), gone], {os.getpid(): "me"}).values()
    assert mine.role == "me" and mine.rss >= mine.pss > 0 and mine.cpu > 0
    assert cpu_of([gone]) == 0.0


def test_payloads_are_sms_or_email_and_asap_on_request() -> None:
    assert payload("SMS", 7)["type"].endswith("_SMS") and payload("EMAIL", 7)["type"].endswith("_EMAIL")
    assert payload("SMS", 7, asap=True)["requester"] == {"asap": "yes"}
    assert "requester" not in payload("SMS", 7)
