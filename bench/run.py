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

Three tables go to stdout: issue 19's targets (``bench.targets``: each figure beside its
target, met or MISSED, "not run" when no part measured it), Herald's CPU per delivered
notification by role beside the ceiling's and Celery's (``bench.roles``), and the other
figures (earlier issues' targets and context). Everything goes to ``bench/results.json``. A
part that fails is reported as failed (with its error) and the others still run; the exit code
says so.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.targets import evaluate, markdown
from bench.targets import table as targets_table

if TYPE_CHECKING:
    from bench.backlog_figures import IntakeFigure, LatencyFigure
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


#: How the tables name the mixed run's systems.
MIXED_NAMES = {"ceiling": "ceiling (direct asyncio send)", "celery": "Celery 5 + Redis",
               "herald": "Herald, durable (SQLite FULL)",
               "herald-pg": "Herald, durable (PostgreSQL, local, fsync on)"}
#: Herald on PostgreSQL against Herald on SQLite (mixed figure, batch intake); store commits
#: per delivered notification on either (issue 18).
POSTGRES_VS_SQLITE, COMMITS_PER_NOTIFICATION = 0.8, 0.05


def mixed_figures(result: MixedResult) -> dict[str, float]:
    """What ``bench.targets`` judges of the mixed run: Herald on SQLite against the peers."""
    found = {f"{name}_per_s": figure.per_s for name, figure in result.figures.items()
             if name in ("herald", "ceiling", "celery")}
    found |= {f"{name}_cpu_ms": figure.cpu_ms_per_notification
              for name, figure in result.figures.items() if name in ("herald", "ceiling")}
    if (herald := result.figures.get("herald")) is not None:
        for key, per in (("commits_per_delivered", herald.commits_per_notification),
                         ("shard_calls_per_delivered", herald.shard_calls_per_notification)):
            if per is not None:
                found[key] = per
    return found


def mixed_rows(result: MixedResult) -> list[Row]:
    """The mixed figure's other rows: each system's delivered/s (issue 19's ratios are targets),
    Herald on PostgreSQL against Herald on SQLite and its store commits."""
    postgres = result.postgres_vs_sqlite or 0.0
    rows = [Row(f"mixed SMS + email: {MIXED_NAMES[name]}", f"{figure.per_s:,.0f}/s", "", None)
            for name, figure in result.figures.items()]
    if "herald-pg" not in result.figures or "herald" not in result.figures:
        return rows
    per = result.figures["herald-pg"].commits_per_notification
    return [*rows, Row("  Herald on PostgreSQL vs on SQLite", f"{postgres:.2f}×",
                       f"≥ {POSTGRES_VS_SQLITE}×", postgres >= POSTGRES_VS_SQLITE),
            Row("  store commits per delivered notification, PostgreSQL",
                "not counted" if per is None else f"{per:.3f}", f"≤ {COMMITS_PER_NOTIFICATION}",
                per is not None and per <= COMMITS_PER_NOTIFICATION)]


def mixed_detail(result: MixedResult) -> dict[str, Any]:
    """The mixed run for ``results.json``: each system's figures, Herald's CPU by role."""
    systems = {name: {"per_s": f.per_s, "seconds": f.seconds, "duplicates": f.duplicates,
                      "cpu_ms_per_notification": f.cpu_ms_per_notification, "note": f.note,
                      **({} if f.store is None else {
                          "store_commits": f.store.commits, "sent": f.store.sent,
                          "receipts": f.store.delivered,
                          "commits_per_notification": f.commits_per_notification,
                          "shard_calls": f.store.shard_calls,
                          "shard_calls_per_notification": f.shard_calls_per_notification}),
                      **({"cpu_ms_by_role": f.cpu_ms_by_role()} if f.cpu_roles else {})}
               for name, f in result.figures.items()}
    return {"total": result.total, "systems": systems,
            "postgres_vs_sqlite": result.postgres_vs_sqlite, "lines": result.lines(),
            "figures": mixed_figures(result), "cpu_table": cpu_table(result)}


def cpu_table(result: MixedResult) -> str:
    """Each Herald's CPU per delivered notification by role, beside the ceiling's and Celery's."""
    from bench.roles import role_table

    names = {"herald": "Herald (SQLite)", "herald-pg": "Herald (PostgreSQL)",
             "ceiling": "ceiling (its process)", "celery": "Celery + Redis (all)"}
    figures = {names[n]: f for n, f in result.figures.items()}
    return role_table({n: f.cpu_roles for n, f in figures.items() if f.cpu_roles},
                      {n: f.cpu_seconds for n, f in figures.items() if not f.cpu_roles},
                      {n: f.delivered for n, f in figures.items()})


def _mixed(quick: bool, systems: Sequence[str] | None = None) -> tuple[list[Row], dict[str, Any]]:
    from bench.mixed import SYSTEMS, measure_mixed

    result = measure_mixed(total=4_000 if quick else 16_000, systems=systems or SYSTEMS)
    return mixed_rows(result), mixed_detail(result)


def intake_rows(sqlite: IntakeFigure, postgres: IntakeFigure | None) -> list[Row]:
    """Batch intake on PostgreSQL against SQLite's (SQLite's own is a target of issue 19's)."""
    if postgres is None:
        return []
    ratio = postgres.median / sqlite.median
    return [Row("batch intake on PostgreSQL (local, fsync on), vs SQLite",
                f"{postgres.median:,.0f}/s = {ratio:.2f}×", f"≥ {POSTGRES_VS_SQLITE}×",
                ratio >= POSTGRES_VS_SQLITE)]


def p99_ms(latency: LatencyFigure) -> float:
    ordered = sorted(latency.latencies)
    return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


def _backlog(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench.backlog import measure, measure_intake_postgres

    queued = 100_000 if quick else 1_000_000
    figures = measure(queued, 10.0 if quick else 15.0)
    postgres = measure_intake_postgres(queued)
    intake, memory = figures.intake, figures.memory
    per = memory.per_notification("rss")
    ten_m = (memory.shards[0].rss + memory.per_notification("rss", marginal=True) * 10_000_000) / 2**30

    unloaded, behind = p99_ms(figures.asap_unloaded), p99_ms(figures.asap_behind_backlog)
    loaded = None if figures.asap_loaded is None else p99_ms(figures.asap_loaded)
    shard, whole = figures.shard_restart, figures.whole_restart
    rows = [
        *intake_rows(intake, postgres),
        Row(f"asap accept→sent p99, {figures.asap_unloaded.context}", f"{unloaded:,.0f} ms",
            "< 100 ms", unloaded < 100),
        Row("10 M queued, extrapolated (shards' RSS)", f"{ten_m:.2f} GiB", "< 2 GiB", ten_m < 2),
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
                  "asap_p99_ms": {"unloaded": unloaded, "behind_backlog": behind,
                                  "behind_backlog_loaded": loaded},
                  "restart_s": {"shard": shard.serving_s, "whole": whole.serving_s},
                  "lines": figures.lines() + postgres.lines(),
                  "figures": {"batch_intake_per_s": intake.median, "asap_p99_quiet_ms": behind,
                              "memory_per_queued_b": per, "backlog_queued": queued,
                              **({} if loaded is None else {"asap_p99_loaded_ms": loaded})}}


def _browser(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench.browser_fanout import run_browser_fanout

    result = run_browser_fanout(users=1000, total=5_000 if quick else 20_000, rounds=1 if quick else 2)
    return ([], {"per_s": result.per_s, "rounds": list(result.rounds),
                 "lines": [result.describe()], "figures": {"browser_per_s": result.per_s}})


def _single(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench.single_post import run_single_post

    result = run_single_post(seconds=5.0 if quick else 8.0, rounds=1 if quick else 3)
    return ([Row("single POSTs: Herald", f"{result.herald_per_s:,.0f}/s", "", None),
             Row("single POSTs: no-op Serve FastAPI endpoint", f"{result.noop_per_s:,.0f}/s", "",
                 None)],
            {"herald_per_s": result.herald_per_s, "noop_per_s": result.noop_per_s,
             "ratio": result.ratio, "lines": [result.describe()],
             "figures": {"single_post_ratio": result.ratio}})


def _idle(quick: bool) -> tuple[list[Row], dict[str, Any]]:
    from bench.idle import measure_idle

    result = measure_idle(settle=10.0 if quick else 20.0)
    gib = result.pss_mib / 1024
    return ([Row(f"`make run` at idle: {result.processes} processes, RSS",
                 f"{result.rss_mib / 1024:.2f} GiB", "", None)],
            {"processes": result.processes, "rss_mib": result.rss_mib, "pss_mib": result.pss_mib,
             "roles": {r.role: {"count": r.count, "pss_mib": r.pss_mib} for r in result.roles},
             "lines": [result.describe()], "figures": {"idle_pss_gib": gib}})


MEASURES: dict[str, Callable[[bool], tuple[list[Row], dict[str, Any]]]] = {
    "mixed": _mixed, "backlog": _backlog, "browser": _browser, "single": _single, "idle": _idle,
}


def table(rows: list[Row]) -> str:
    if not rows:
        return "(none)"
    return markdown([("figure", "value", "target", "met"), *(
        (r.figure, r.value, r.target, "" if r.met is None else "met" if r.met else "MISSED")
        for r in rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=PARTS, help="run only these parts")
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--mixed", nargs="+", metavar="SYSTEM",
                        help="the mixed part runs only these (ceiling, herald, herald-pg, celery)")
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[Row] = []
    results: dict[str, Any] = {"cores": os.cpu_count(), "quick": args.quick, "parts": {}}
    failed = []
    for part in args.only or PARTS:
        print(f"\n== {part} (load {_load()})", flush=True)
        began = time.perf_counter()
        try:
            part_rows, detail = (_mixed(args.quick, args.mixed) if part == "mixed"
                                 else MEASURES[part](args.quick))
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
    figures = {k: v for detail in results["parts"].values() for k, v in detail.get("figures", {}).items()}
    verdicts = evaluate(figures)
    results["rows"] = [r.json() for r in rows]
    results["targets"] = [v.json() for v in verdicts]
    results["seconds"] = time.perf_counter() - started
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nHerald benchmark — {os.cpu_count()} cores, {results['seconds'] / 60:.1f} min, "
          f"load {_load()}{' (--quick: smaller runs)' if args.quick else ''}\n")
    print("Targets (issue 19)\n\n" + targets_table(verdicts))
    cpu = results["parts"].get("mixed", {}).get("cpu_table")
    print("\nCPU per delivered notification by role, mixed run (ms)\n\n"
          + (cpu or "not run"))
    print("\nOther figures\n\n" + table(rows))
    print(f"\n(figures in {args.out})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
