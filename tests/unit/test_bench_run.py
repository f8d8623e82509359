"""``make bench``'s rows and figures: issue 19's targets read from the mixed run (ratios, CPU,
shard calls and commits per delivered notification), Herald's CPU by role beside the peers, and
the other rows (issue 18: Herald on PostgreSQL against Herald on SQLite)."""

from __future__ import annotations

from bench.backlog_figures import IntakeFigure
from bench.herald_counters import StoreCounts
from bench.mixed import MixedResult, SystemFigure
from bench.run import Row, intake_rows, mixed_detail, mixed_figures, mixed_rows
from bench.targets import evaluate


def _figure(name: str, seconds: float, commits: int | None = None, calls: int | None = None,
            cpu: float = 48.0, roles: dict[str, float] | None = None) -> SystemFigure:
    store = None if name in ("ceiling", "celery") else StoreCounts(commits, 16_000, 8_000, calls)
    return SystemFigure(name, 16_000, seconds, 0, (1.0, 1.0, 1.0), (2.0, 1.0, 1.0), cpu, 8.0,
                        store=store, cpu_roles=roles or {})


def _judged(rows: list[Row]) -> dict[str, tuple[str, bool | None]]:
    return {row.figure.strip(): (row.value, row.met) for row in rows}


ROLES = {"proxy": 4.8, "replica": 3.2, "shards": 16.0, "channel actors": 24.0, "others": 8.0,
         "client + driver": 0.8}


def _four() -> MixedResult:
    return MixedResult(16_000, {"ceiling": _figure("ceiling", 4.0, cpu=4.0),
                                "herald": _figure("herald", 20.0, commits=480, calls=24_000,
                                                  cpu=56.8, roles=ROLES),
                                "herald-pg": _figure("herald-pg", 24.0, commits=640, cpu=60.0,
                                                     roles={"shards": 20.0, "PostgreSQL": 40.0}),
                                "celery": _figure("celery", 40.0, cpu=64.0)})


def test_the_mixed_run_gives_issue_19_its_figures() -> None:
    figures = mixed_figures(_four())
    assert figures == {"ceiling_per_s": 4000.0, "herald_per_s": 800.0, "celery_per_s": 400.0,
                       "ceiling_cpu_ms": 0.25, "herald_cpu_ms": 3.55,
                       "commits_per_delivered": 0.03, "shard_calls_per_delivered": 1.5}
    verdicts = {v.figure.strip(" …"): (v.measured, v.status) for v in evaluate(figures)}
    assert verdicts["delivered/s vs the ceiling"] == ("0.20× (800/s vs 4,000/s)", "MISSED")
    assert verdicts["vs the ceiling process's own CPU per notification (same run)"] == (
        "14.20× (3.55 ms vs 0.25 ms)", "MISSED")
    assert verdicts["store commits per delivered notification"] == ("0.030", "met")
    assert verdicts["shard calls per delivered notification"] == ("1.500", "MISSED")
    assert verdicts["batch intake, pools at 0, 4 clients × 1,000"][1] == "not run"


def test_a_herald_without_the_shard_call_counter_leaves_that_figure_not_run() -> None:
    result = MixedResult(16_000, {"herald": _figure("herald", 20.0, commits=480)})
    assert mixed_figures(result) == {"herald_per_s": 800.0, "herald_cpu_ms": 3.0,
                                     "commits_per_delivered": 0.03}
    assert "shard calls not counted" in "\n".join(result.lines())


def test_herald_cpu_by_role_stands_beside_the_ceiling_and_celery() -> None:
    detail = mixed_detail(_four())
    lines = [[c.strip() for c in line.strip("|").split("|")]
             for line in detail["cpu_table"].splitlines()]
    assert lines[0] == ["role (ms CPU / delivered)", "Herald (SQLite)", "Herald (PostgreSQL)",
                        "ceiling (its process)", "Celery + Redis (all)"]
    assert {row[0]: row[1:] for row in lines[2:]} == {
        "proxy": ["0.300", "", "", ""], "replica": ["0.200", "", "", ""],
        "shards": ["1.000", "1.250", "", ""], "channel actors": ["1.500", "", "", ""],
        "others": ["0.500", "", "", ""], "client + driver": ["0.050", "", "", ""],
        "PostgreSQL": ["", "2.500", "", ""], "total": ["3.550", "3.750", "0.250", "4.000"]}
    herald = detail["systems"]["herald"]
    assert herald["cpu_ms_by_role"]["channel actors"] == 1.5
    assert (herald["shard_calls"], herald["shard_calls_per_notification"]) == (24_000, 1.5)
    assert "cpu_ms_by_role" not in detail["systems"]["celery"]
    assert "ms CPU/notification by role: proxy 0.30, replica 0.20, shards 1.00" in "\n".join(
        detail["lines"])


def test_postgres_within_its_share_of_sqlite_and_few_commits_meet_the_targets() -> None:
    result = _four()
    rows = _judged(mixed_rows(result))
    assert rows["mixed SMS + email: Herald, durable (PostgreSQL, local, fsync on)"] == ("667/s", None)
    assert rows["Herald on PostgreSQL vs on SQLite"] == ("0.83×", True)
    assert rows["store commits per delivered notification, PostgreSQL"] == ("0.040", True)
    lines = "\n".join(result.lines())
    assert "herald-pg/herald      0.83 in delivered/s,   0.95 in CPU per notification" in lines
    assert "store: 640 commits for 16,000 sent (+ 8,000 receipts) = 0.040 commits/notification" \
        in lines
    assert "24,000 shard calls = 1.500/notification" in lines


def test_a_slow_postgres_many_commits_or_none_counted_fail() -> None:
    result = MixedResult(16_000, {"herald": _figure("herald", 20.0, commits=24_000),
                                  "herald-pg": _figure("herald-pg", 30.0, commits=None)})
    rows = _judged(mixed_rows(result))
    assert rows["Herald on PostgreSQL vs on SQLite"] == ("0.67×", False)
    assert rows["store commits per delivered notification, PostgreSQL"] == ("not counted", False)
    assert mixed_figures(result)["commits_per_delivered"] == 1.5
    assert "store commits not counted by this Herald (16000 sent)" in "\n".join(result.lines())
    # Only the systems that ran have rows, and nothing to compare without Herald on SQLite.
    alone = MixedResult(16_000, {"herald-pg": _figure("herald-pg", 30.0, commits=None)})
    assert [r.figure for r in mixed_rows(alone)] == [
        "mixed SMS + email: Herald, durable (PostgreSQL, local, fsync on)"]


def test_batch_intake_on_postgres_is_judged_against_sqlite() -> None:
    sqlite = IntakeFigure(10_000.0, [10_000.0] * 3, 9_500.0, {}, "1 1 1")
    fast = IntakeFigure(8_500.0, [8_500.0] * 3, None, {}, "1 1 1", "PostgreSQL (local, fsync on)")
    slow = IntakeFigure(7_000.0, [7_000.0] * 3, None, {}, "1 1 1", "PostgreSQL (local, fsync on)")
    assert [(r.value, r.met) for r in intake_rows(sqlite, fast)] == [("8,500/s = 0.85×", True)]
    assert intake_rows(sqlite, slow)[0].met is False
    assert intake_rows(sqlite, None) == []
    assert "PostgreSQL (local, fsync on): median 8,500/s (rounds 8,500, 8,500, 8,500) [" \
        in fast.lines()[0]
