"""`make bench`: every figure of the performance issue, beside its target, in one run.

Each part starts what it measures on this machine (a whole Herald on its own local Ray, the
peers it is compared with, loopback sinks) and stops it before the next part starts:

- ``mixed``: 16,000 notifications (half SMS to a Twilio-compatible API, half email over SMTP),
  delivered/s for the ceiling (one asyncio process sending directly), Herald on SQLite, Herald
  on a local PostgreSQL (fsync on), and Celery + Redis, against the same sinks; each Herald's
  store commits per delivered notification (``bench.mixed``);
- ``backlog``: batch intake with every pool at 0, memory per queued notification at 1,000,000
  queued, a shard's and a whole restart with that backlog, asap accept→sent p99 unloaded and
  behind the backlog (``bench.backlog``); batch intake again on PostgreSQL;
- ``browser``: pushed and acked per second with 1,000 connected users (``bench.browser_fanout``);
- ``single``: single POSTs beside a no-op Ray Serve FastAPI endpoint (``bench.single_post``);
- ``idle``: total memory of every process `make run` starts, at idle (``bench.idle``).

The table goes to stdout and every figure to ``bench/results.json``. A part that fails is
reported as failed (with its error) and the others still run; the exit code says so.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.backlog_figures import IntakeFigure
    from bench.mixed import MixedResult

RESULTS = Path(__file__).with_name("results.json")
PARTS = ("mixed", "backlog", "browser", "single", "idle")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a figure, its target, and whether it met it."""

    figure: str
    value: str
    target: str
    met: bool | None  # None: not judged (context only)

    def json(self) -> dict[str, Any]:
        return {"figure": self.figure, "value": self.value, "target": self.target, "met": self.met}


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


#: Herald on PostgreSQL against Herald on SQLite (mixed figure, batch intake); store commits
#: per delivered notification on either (issue 18).
POSTGRES_VS_SQLITE, COMMITS_PER_NOTIFICATION = 0.8, 0.05


def mixed_rows(result: MixedResult) -> list[Row]:
    """The mixed figure's rows: each system's delivered/s, Herald's ratios, each Herald's
    store commits per delivered notification."""
    per_s = {name: f.per_s for name, f in result.figures.items()}
    ceiling, celery = result.herald_vs_ceiling or 0.0, result.herald_vs_celery or 0.0
    postgres = result.postgres_vs_sqlite or 0.0
    rows = [
        Row("mixed SMS + email: ceiling (direct asyncio send)", f"{per_s.get('ceiling', 0):,.0f}/s",
            "", None),
        Row("mixed SMS + email: Celery 5 + Redis", f"{per_s.get('celery', 0):,.0f}/s", "", None),
        Row("mixed SMS + email: Herald, durable (SQLite FULL)", f"{per_s.get('herald', 0):,.0f}/s",
            "", None),
        Row("mixed SMS + email: Herald, durable (PostgreSQL, local, fsync on)",
            f"{per_s.get('herald-pg', 0):,.0f}/s", "", None),
        Row("  Herald vs the ceiling", f"{ceiling:.2f}×", "≥ 0.7×", ceiling >= 0.7),
        Row("  Herald vs Celery + Redis", f"{celery:.2f}×", "≥ 4×", celery >= 4.0),
        Row("  Herald on PostgreSQL vs on SQLite", f"{postgres:.2f}×",
            f"≥ {POSTGRES_VS_SQLITE}×", postgres >= POSTGRES_VS_SQLITE),
    ]
    for name, store in (("herald", "SQLite"), ("herald-pg", "PostgreSQL")):
        figure = result.figures.get(name)
        per = None if figure is None else figure.commits_per_notification
        rows.append(Row(f"  store commits per delivered notification, {store}",
                        "not counted" if per is None else f"{per:.3f}",
                        f"≤ {COMMITS_PER_NOTIFICATION}",
                        per is not None and per <= COMMITS_PER_NOTIFICATION))
    return rows


def _mixed(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench.mixed import measure_mixed

    result = measure_mixed(total=4_000 if quick else 16_000)
    figures = {name: {"per_s": f.per_s, "seconds": f.seconds, "duplicates": f.duplicates,
                      "cpu_ms_per_notification": f.cpu_ms_per_notification, "note": f.note,
                      **({} if f.store is None else {
                          "store_commits": f.store.commits, "sent": f.store.sent,
                          "receipts": f.store.delivered,
                          "commits_per_notification": f.commits_per_notification})}
               for name, f in result.figures.items()}
    return mixed_rows(result), {"total": result.total, "systems": figures,
                                "postgres_vs_sqlite": result.postgres_vs_sqlite,
                                "lines": result.lines()}


def intake_rows(sqlite: IntakeFigure, postgres: IntakeFigure | None) -> list[Row]:
    """Batch intake on SQLite against its target, and on PostgreSQL against SQLite's."""
    rows = [Row("batch intake, pools 0, 4 clients × 1,000", f"{sqlite.median:,.0f}/s",
                "≥ 50,000/s", sqlite.median >= 50_000)]
    if postgres is not None:
        ratio = postgres.median / sqlite.median
        rows.append(Row("  on PostgreSQL (local, fsync on), vs SQLite",
                        f"{postgres.median:,.0f}/s = {ratio:.2f}×", f"≥ {POSTGRES_VS_SQLITE}×",
                        ratio >= POSTGRES_VS_SQLITE))
    return rows


def _backlog(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench.backlog import measure, measure_intake_postgres

    queued = 100_000 if quick else 1_000_000
    figures = measure(queued, 10.0 if quick else 15.0)
    postgres = measure_intake_postgres(queued)
    intake, memory = figures.intake, figures.memory
    per = memory.per_notification("rss")
    ten_m = (memory.shards[0].rss + memory.per_notification("rss", marginal=True) * 10_000_000) / 2**30

    def p99(latency: Any) -> float:
        ordered = sorted(latency.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0

    unloaded, behind = p99(figures.asap_unloaded), p99(figures.asap_behind_backlog)
    shard, whole = figures.shard_restart, figures.whole_restart
    rows = [
        *intake_rows(intake, postgres),
        Row(f"asap accept→sent p99, {figures.asap_unloaded.context}", f"{unloaded:,.0f} ms",
            "< 100 ms", unloaded < 100),
        Row(f"asap accept→sent p99, {queued:,} queued ahead", f"{behind:,.0f} ms", "< 1 s",
            behind < 1000),
        Row(f"memory per queued notification (shards' RSS, {queued:,})", f"{per:,.0f} B",
            "< 200 B", per < 200),
        Row("  10 M queued, extrapolated", f"{ten_m:.2f} GiB", "< 2 GiB", ten_m < 2),
        Row(f"a shard restarting with {queued:,} queued serves again", f"{shard.serving_s:.1f} s",
            "< 10 s", shard.serving_s < 10),
        Row(f"whole Herald restarting with {queued:,} queued serves again",
            f"{whole.serving_s:.1f} s", "", None),
    ]
    return rows, {"queued": queued, "intake_rounds": intake.rounds,
                  "cpu_ms_per_1000_accepted": intake.cpu_ms_per_1000,
                  "postgres_intake_rounds": postgres.rounds,
                  "postgres_cpu_ms_per_1000_accepted": postgres.cpu_ms_per_1000,
                  "memory_bytes_per_queued": per, "ten_million_gib": ten_m,
                  "asap_p99_ms": {"unloaded": unloaded, "behind_backlog": behind},
                  "restart_s": {"shard": shard.serving_s, "whole": whole.serving_s},
                  "lines": figures.lines() + postgres.lines()}


def _browser(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench.browser_fanout import run_browser_fanout

    result = run_browser_fanout(users=1000, total=5_000 if quick else 20_000, rounds=1 if quick else 2)
    return ([Row("browser pushed + acked, 1,000 connected users", f"{result.per_s:,.0f}/s",
                 "≥ 10,000/s", result.per_s >= 10_000)],
            {"per_s": result.per_s, "rounds": list(result.rounds), "lines": [result.describe()]})


def _single(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench.single_post import run_single_post

    result = run_single_post(seconds=5.0 if quick else 8.0, rounds=1 if quick else 3)
    return ([Row("single POSTs: Herald", f"{result.herald_per_s:,.0f}/s", "", None),
             Row("single POSTs: no-op Serve FastAPI endpoint", f"{result.noop_per_s:,.0f}/s", "",
                 None),
             Row("  Herald vs the no-op endpoint", f"{result.ratio:.2f}×", "≥ 0.8×", result.ratio >= 0.8)],
            {"herald_per_s": result.herald_per_s, "noop_per_s": result.noop_per_s,
             "ratio": result.ratio, "lines": [result.describe()]})


def _idle(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench.idle import measure_idle

    result = measure_idle(settle=10.0 if quick else 20.0)
    gib = result.pss_mib / 1024
    return ([Row(f"`make run` at idle: every process ({result.processes}), PSS",
                 f"{gib:.2f} GiB (RSS {result.rss_mib / 1024:.2f})", "< 1 GiB", result.pss_mib < 1024)],
            {"processes": result.processes, "rss_mib": result.rss_mib, "pss_mib": result.pss_mib,
             "roles": {r.role: {"count": r.count, "pss_mib": r.pss_mib} for r in result.roles},
             "lines": [result.describe()]})


MEASURES: dict[str, Callable[[bool], tuple[list[Row], dict[str, Any]]]] = {
    "mixed": _mixed, "backlog": _backlog, "browser": _browser, "single": _single, "idle": _idle,
}


def table(rows: list[Row]) -> str:
    width = max(len(r.figure) for r in rows)
    out = [f"| {'figure':{width}s} | value | target | met |", f"|{'-' * (width + 2)}|---|---|---|"]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        out.append(f"| {r.figure:{width}s} | {r.value} | {r.target} | {met} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=PARTS, help="run only these parts")
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[Row] = []
    results: dict[str, Any] = {"cores": os.cpu_count(), "quick": args.quick, "parts": {}}
    failed = []
    for part in args.only or PARTS:
        print(f"\n== {part} (load {_load()})", flush=True)
        began = time.perf_counter()
        try:
            part_rows, detail = MEASURES[part](args.quick)
        except Exception as error:  # noqa: BLE001 - one failed part must not hide the others
            traceback.print_exc()
            failed.append(part)
            rows.append(Row(part, "failed", str(error)[:80], False))
            results["parts"][part] = {"error": repr(error)}
            continue
        detail.update(seconds=time.perf_counter() - began, load=_load())
        for line in detail.get("lines", []):
            print(line, flush=True)
        rows += part_rows
        results["parts"][part] = detail
    results["rows"] = [r.json() for r in rows]
    results["seconds"] = time.perf_counter() - started
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nHerald benchmark — {os.cpu_count()} cores, {results['seconds'] / 60:.1f} min, "
          f"load {_load()}\n")
    print(table(rows))
    print(f"\n(figures in {args.out})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
