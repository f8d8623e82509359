"""Issue 19's targets table: every row judged from the figures a run measured, "not run" when a
figure is missing, and the table printed as figure | measured | target | met."""

from __future__ import annotations

import pytest

from bench.targets import FIGURES, TARGETS, evaluate, table

#: The issue's "today" figures (2026-11-28), with a ceiling and Celery to compare them with.
TODAY = {"herald_cpu_ms": 3.2, "ceiling_cpu_ms": 0.26, "herald_per_s": 1006.0,
         "ceiling_per_s": 7739.0, "celery_per_s": 666.0, "shard_calls_per_delivered": 1.5,
         "commits_per_delivered": 1.2, "batch_intake_per_s": 9602.0, "browser_per_s": 1536.0,
         "asap_p99_quiet_ms": 507.0, "asap_p99_loaded_ms": 6900.0, "backlog_queued": 1_000_000,
         "memory_per_queued_b": 315.0, "idle_pss_gib": 1.70, "single_post_ratio": 1.21}
#: Every target met, each just inside its bound.
MET = {"herald_cpu_ms": 0.5, "ceiling_cpu_ms": 0.2, "herald_per_s": 5000.0,
       "ceiling_per_s": 10_000.0, "celery_per_s": 1000.0, "shard_calls_per_delivered": 0.05,
       "commits_per_delivered": 0.05, "batch_intake_per_s": 50_000.0, "browser_per_s": 10_000.0,
       "asap_p99_quiet_ms": 999.0, "asap_p99_loaded_ms": 999.0, "backlog_queued": 1_000_000,
       "memory_per_queued_b": 199.0, "idle_pss_gib": 0.99, "single_post_ratio": 1.0}


def _by_figure(figures: dict[str, float]) -> dict[str, tuple[str, str, str]]:
    return {v.figure.strip(" …"): (v.measured, v.target, v.status) for v in evaluate(figures)}


def test_todays_figures_miss_what_the_issue_says_they_miss() -> None:
    rows = _by_figure(TODAY)
    assert rows["CPU per delivered notification, all Herald processes, mixed with receipts"] == (
        "3.20 ms", "≤ 0.50 ms", "MISSED")
    assert rows["vs the ceiling process's own CPU per notification (same run)"] == (
        "12.31× (3.20 ms vs 0.26 ms)", "≤ 2.50×", "MISSED")
    assert rows["delivered/s vs the ceiling"] == ("0.13× (1,006/s vs 7,739/s)", "≥ 0.50×", "MISSED")
    assert rows["delivered/s vs Celery + Redis"] == ("1.51× (1,006/s vs 666/s)", "≥ 5.00×", "MISSED")
    assert rows["shard calls per delivered notification"] == ("1.500", "≤ 0.050", "MISSED")
    assert rows["batch intake, pools at 0, 4 clients × 1,000"] == ("9,602/s", "≥ 50,000/s", "MISSED")
    assert rows["browser pushed + acked, 1,000 users"] == ("1,536/s", "≥ 10,000/s", "MISSED")
    assert rows["asap p99 behind 1 M queued, quiet box"] == ("507 ms", "< 1.0 s", "met")
    assert rows["asap p99 behind 1 M queued, loaded box"] == ("6.9 s", "< 1.0 s", "MISSED")
    assert rows["memory per queued notification at 1 M"] == ("315 B", "< 200 B", "MISSED")
    assert rows["`make run` idle, PSS of every process"] == ("1.70 GiB", "< 1.00 GiB", "MISSED")
    assert rows["single POSTs vs a no-op Serve endpoint"] == ("1.21×", "≥ 1.00×", "met")


def test_every_target_met_on_its_bound_and_missed_just_past_it() -> None:
    assert {v.status for v in evaluate(MET)} == {"met"}
    worse = {"herald_cpu_ms": 0.51, "shard_calls_per_delivered": 0.051, "asap_p99_loaded_ms": 1000.0,
             "memory_per_queued_b": 200.0, "single_post_ratio": 0.99, "celery_per_s": 1001.0}
    missed = {v.figure.strip(" …") for v in evaluate(MET | worse) if v.met is False}
    assert missed == {"CPU per delivered notification, all Herald processes, mixed with receipts",
                      "vs the ceiling process's own CPU per notification (same run)",
                      "shard calls per delivered notification", "asap p99 behind 1 M queued, loaded box",
                      "memory per queued notification at 1 M", "single POSTs vs a no-op Serve endpoint",
                      "delivered/s vs Celery + Redis"}


def test_a_figure_not_measured_is_not_run_never_met() -> None:
    only_mixed = {k: v for k, v in TODAY.items() if k.endswith(("_cpu_ms", "_per_s"))
                  and k not in ("batch_intake_per_s", "browser_per_s")}
    only_mixed.pop("celery_per_s")
    verdicts = evaluate(only_mixed)
    assert len(verdicts) == len(TARGETS) == 13
    ran = [v.figure.strip(" …") for v in verdicts if v.met is not None]
    assert ran == ["CPU per delivered notification, all Herald processes, mixed with receipts",
                   "vs the ceiling process's own CPU per notification (same run)",
                   "delivered/s vs the ceiling"]
    celery = next(v for v in verdicts if v.figure == "delivered/s vs Celery + Redis")
    assert (celery.measured, celery.status, celery.value) == ("not run", "not run", None)
    assert {v.status for v in evaluate({})} == {"not run"}


def test_a_smaller_backlog_says_so_beside_its_figures() -> None:
    rows = _by_figure(TODAY | {"backlog_queued": 100_000})
    assert rows["asap p99 behind 1 M queued, quiet box"][0] == "507 ms (100,000 queued, not 1 M)"
    assert rows["memory per queued notification at 1 M"][0] == "315 B (100,000 queued, not 1 M)"


def test_a_misspelt_figure_is_refused() -> None:
    with pytest.raises(KeyError, match="herald_cpu"):
        evaluate({"herald_cpu": 1.0})
    assert set(TODAY) == set(FIGURES)  # every figure a target reads is one a part can give


def test_the_table_has_a_line_per_target_and_aligned_columns() -> None:
    lines = table(evaluate(TODAY)).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["figure", "measured", "target",
                                                                   "met"]
    assert len(lines) == 2 + len(TARGETS) and len({len(line) for line in lines}) == 1
    assert lines[2].endswith("| MISSED |") and "| 3.20 ms " in lines[2]
