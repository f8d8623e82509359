"""``make bench``'s rows for issue 18: Herald on PostgreSQL against Herald on SQLite (mixed figure
and batch intake), and store commits per delivered notification on each, judged on their targets."""

from __future__ import annotations

from bench.backlog_figures import IntakeFigure
from bench.herald_counters import StoreCounts
from bench.mixed import MixedResult, SystemFigure
from bench.run import Row, intake_rows, mixed_rows


def _figure(name: str, seconds: float, commits: int | None = None) -> SystemFigure:
    store = None if name in ("ceiling", "celery") else StoreCounts(commits, 16_000, 8_000)
    return SystemFigure(name, 16_000, seconds, 0, (1.0, 1.0, 1.0), (2.0, 1.0, 1.0), 48.0, 8.0,
                        store=store)


def _judged(rows: list[Row]) -> dict[str, tuple[str, bool | None]]:
    return {row.figure.strip(): (row.value, row.met) for row in rows}


def test_postgres_within_its_share_of_sqlite_and_few_commits_meet_the_targets() -> None:
    result = MixedResult(16_000, {"ceiling": _figure("ceiling", 4.0),
                                  "herald": _figure("herald", 20.0, commits=480),
                                  "herald-pg": _figure("herald-pg", 24.0, commits=640),
                                  "celery": _figure("celery", 40.0)})
    rows = _judged(mixed_rows(result))
    assert rows["mixed SMS + email: Herald, durable (PostgreSQL, local, fsync on)"] == ("667/s", None)
    assert rows["Herald on PostgreSQL vs on SQLite"] == ("0.83×", True)
    assert rows["store commits per delivered notification, SQLite"] == ("0.030", True)
    assert rows["store commits per delivered notification, PostgreSQL"] == ("0.040", True)
    assert rows["Herald vs the ceiling"] == ("0.20×", False)
    lines = "\n".join(result.lines())
    assert "herald-pg/herald      0.83 in delivered/s,   1.00 in CPU per notification" in lines
    assert "store: 640 commits for 16,000 sent (+ 8,000 receipts) = 0.040 commits/notification" \
        in lines


def test_a_slow_postgres_many_commits_or_none_counted_fail() -> None:
    result = MixedResult(16_000, {"herald": _figure("herald", 20.0, commits=24_000),
                                  "herald-pg": _figure("herald-pg", 30.0, commits=None)})
    rows = _judged(mixed_rows(result))
    assert rows["Herald on PostgreSQL vs on SQLite"] == ("0.67×", False)
    assert rows["store commits per delivered notification, SQLite"] == ("1.500", False)
    assert rows["store commits per delivered notification, PostgreSQL"] == ("not counted", False)
    assert "store commits not counted by this Herald (16000 sent)" in "\n".join(result.lines())


def test_batch_intake_on_postgres_is_judged_against_sqlite() -> None:
    sqlite = IntakeFigure(10_000.0, [10_000.0] * 3, 9_500.0, {}, "1 1 1")
    fast = IntakeFigure(8_500.0, [8_500.0] * 3, None, {}, "1 1 1", "PostgreSQL (local, fsync on)")
    slow = IntakeFigure(7_000.0, [7_000.0] * 3, None, {}, "1 1 1", "PostgreSQL (local, fsync on)")
    assert [(r.value, r.met) for r in intake_rows(sqlite, fast)] == [
        ("10,000/s", False), ("8,500/s = 0.85×", True)]
    assert intake_rows(sqlite, slow)[1].met is False
    assert len(intake_rows(sqlite, None)) == 1
    assert "PostgreSQL (local, fsync on): median 8,500/s (rounds 8,500, 8,500, 8,500) [" \
        in fast.lines()[0]
