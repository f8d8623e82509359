"""What the benchmarks read from Herald's ``/metrics``: the exposition Herald renders, parsed
back, and what a run added between two readings."""

from __future__ import annotations

from bench.herald_counters import StoreCounts, counters
from herald.metrics import Histogram, MetricsSnapshot, ShardStats, render_prometheus


def _exposition(*shard_counters: dict[str, int]) -> str:
    shards = [ShardStats(i, {"SMS": {"queued": 1, "retrying": 0, "sending": 2}}, c, Histogram())
              for i, c in enumerate(shard_counters)]
    return render_prometheus(MetricsSnapshot(shards, (), {}, rejected=0)).decode()


def test_the_counters_are_summed_over_shards_and_labelled_gauges_left_out() -> None:
    text = _exposition({"sent": 10, "delivered": 4, "store_commits": 3},
                       {"sent": 6, "delivered": 1, "store_commits": 2})
    found = counters(text)
    assert (found["sent"], found["delivered"], found["store_commits"]) == (16, 5, 5)
    assert "queue_depth" not in found and "rejected" in found


def test_a_run_is_the_difference_of_two_readings() -> None:
    before = StoreCounts.parse(_exposition({"sent": 400, "delivered": 200, "store_commits": 30}))
    after = StoreCounts.parse(_exposition({"sent": 16_400, "delivered": 8_200, "store_commits": 830}))
    run = after - before
    assert run == StoreCounts(commits=800, sent=16_000, delivered=8_000)
    assert run.commits_per_sent == 0.05


def test_a_herald_that_does_not_count_commits_says_so() -> None:
    before = StoreCounts.parse(_exposition({"sent": 0}))
    after = StoreCounts.parse(_exposition({"sent": 8}))
    assert before.commits is None and (after - before).commits is None
    assert (after - before).commits_per_sent is None
    assert StoreCounts(5, 0, 0).commits_per_sent is None  # nothing sent: no ratio


def test_shard_calls_are_counted_when_herald_exports_them() -> None:
    before = StoreCounts.parse(_exposition({"sent": 400, "shard_calls": 100, "store_commits": 3},
                                           {"sent": 0, "shard_calls": 20, "store_commits": 1}))
    after = StoreCounts.parse(_exposition({"sent": 8_400, "shard_calls": 300, "store_commits": 9},
                                          {"sent": 8_000, "shard_calls": 220, "store_commits": 5}))
    assert (before.shard_calls, after.shard_calls) == (120, 520)
    run = after - before
    assert (run.shard_calls, run.sent, run.shard_calls_per_sent) == (400, 16_000, 0.025)
    # Before issue 19 no Herald counted them: the figure is absent, not zero.
    assert StoreCounts.parse(_exposition({"sent": 8})).shard_calls is None
    assert (after - StoreCounts(0, 0, 0)).shard_calls is None
    assert (after - StoreCounts(0, 0, 0)).shard_calls_per_sent is None
