"""Issue 19's targets table, in one place: each figure, how it is read from a run, its bound.

``bench.run`` gathers what its parts measured into one flat mapping of figures (names in
``FIGURES``); ``evaluate`` turns that mapping into one verdict per row of the issue's table, and
``table`` prints them as ``figure | measured | target | met``. A figure a run did not measure
(a part left out with ``--only``, a counter this Herald does not export) is "not run", never
a pass. Pure: no I/O, so the arithmetic is unit-tested.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Figures = Mapping[str, float]

#: The names ``bench.run``'s parts give their figures (the keys of ``Figures``).
FIGURES = {
    "herald_cpu_ms": "CPU ms per delivered notification, all Herald processes (mixed)",
    "ceiling_cpu_ms": "CPU ms per notification of the ceiling process itself (same run)",
    "herald_per_s": "Herald's delivered/s (mixed, SQLite)",
    "ceiling_per_s": "the ceiling's delivered/s (mixed)",
    "celery_per_s": "Celery + Redis's delivered/s (mixed)",
    "shard_calls_per_delivered": "herald_shard_calls_total added / notifications sent (mixed)",
    "commits_per_delivered": "herald_store_commits_total added / notifications sent (mixed)",
    "batch_intake_per_s": "batch intake, pools at 0, 4 clients x 1,000: median accepted/s",
    "browser_per_s": "browser pushed + acked per second, 1,000 users",
    "asap_p99_quiet_ms": "asap accept->sent p99 behind the backlog (ms)",
    "asap_p99_loaded_ms": "the same with every core kept busy by other processes (ms)",
    "backlog_queued": "notifications queued ahead in the backlog figures",
    "memory_per_queued_b": "shards' RSS bytes per queued notification",
    "idle_pss_gib": "PSS of every process `herald up` starts, at idle (GiB)",
    "single_post_ratio": "single POSTs/s: Herald / a no-op Serve endpoint",
}
MILLION = 1_000_000

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "≤": operator.le, "<": operator.lt, "≥": operator.ge, ">": operator.gt}


def _ratio(top: str, bottom: str) -> Callable[[Figures], float | None]:
    def value(figures: Figures) -> float | None:
        if top not in figures or not figures.get(bottom):
            return None
        return figures[top] / figures[bottom]
    return value


def _figure(name: str) -> Callable[[Figures], float | None]:
    return lambda figures: figures.get(name)


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


def _per_s(value: float) -> str:
    return f"{value:,.0f}/s"


def _times(value: float) -> str:
    return f"{value:.2f}×"


def _vs(top: str, bottom: str, fmt: Callable[[float], str]) -> Callable[[Figures], str]:
    return lambda figures: f"{fmt(figures[top])} vs {fmt(figures[bottom])}"


def _behind(figures: Figures) -> str:
    queued = figures.get("backlog_queued")
    return "" if queued is None or queued >= MILLION else f"{queued:,.0f} queued, not 1 M"


@dataclass(frozen=True, slots=True)
class Target:
    """One row: ``value(figures) <op> bound``; ``show`` formats the value and the bound."""

    figure: str
    value: Callable[[Figures], float | None]
    op: str  # a key of _OPERATORS
    bound: float
    show: Callable[[float], str]
    #: What the value was made of, printed after it ("1,006/s vs 2,455/s").
    context: Callable[[Figures], str] | None = None

    @property
    def target(self) -> str:
        return f"{self.op} {self.show(self.bound)}"

    def judge(self, figures: Figures) -> Verdict:
        value = self.value(figures)
        if value is None:
            return Verdict(self.figure, None, "not run", self.target, None)
        text = self.show(value)
        if self.context is not None and (context := self.context(figures)):
            text += f" ({context})"
        return Verdict(self.figure, value, text, self.target, _OPERATORS[self.op](value, self.bound))


@dataclass(frozen=True, slots=True)
class Verdict:
    figure: str
    value: float | None
    measured: str
    target: str
    met: bool | None  # None: not run

    @property
    def status(self) -> str:
        return "not run" if self.met is None else "met" if self.met else "MISSED"

    def json(self) -> dict[str, Any]:
        return {"figure": self.figure, "value": self.value, "measured": self.measured,
                "target": self.target, "met": self.met}


#: Issue 19's table, row for row (a row with two targets is two lines).
TARGETS: tuple[Target, ...] = (
    Target("CPU per delivered notification, all Herald processes, mixed with receipts",
           _figure("herald_cpu_ms"), "≤", 0.5, lambda v: f"{v:.2f} ms"),
    Target("  … vs the ceiling process's own CPU per notification (same run)",
           _ratio("herald_cpu_ms", "ceiling_cpu_ms"), "≤", 2.5, _times,
           _vs("herald_cpu_ms", "ceiling_cpu_ms", lambda v: f"{v:.2f} ms")),
    Target("delivered/s vs the ceiling", _ratio("herald_per_s", "ceiling_per_s"), "≥", 0.5,
           _times, _vs("herald_per_s", "ceiling_per_s", _per_s)),
    Target("delivered/s vs Celery + Redis", _ratio("herald_per_s", "celery_per_s"), "≥", 5.0,
           _times, _vs("herald_per_s", "celery_per_s", _per_s)),
    Target("shard calls per delivered notification", _figure("shard_calls_per_delivered"), "≤",
           0.05, lambda v: f"{v:.3f}"),
    Target("store commits per delivered notification", _figure("commits_per_delivered"), "≤",
           0.05, lambda v: f"{v:.3f}"),
    Target("batch intake, pools at 0, 4 clients × 1,000", _figure("batch_intake_per_s"), "≥",
           50_000, _per_s),
    Target("browser pushed + acked, 1,000 users", _figure("browser_per_s"), "≥", 10_000, _per_s),
    Target("asap p99 behind 1 M queued, quiet box", _figure("asap_p99_quiet_ms"), "<", 1000, _ms,
           _behind),
    Target("asap p99 behind 1 M queued, loaded box", _figure("asap_p99_loaded_ms"), "<", 1000,
           _ms, _behind),
    Target("memory per queued notification at 1 M", _figure("memory_per_queued_b"), "<", 200,
           lambda v: f"{v:,.0f} B", _behind),
    Target("`make run` idle, PSS of every process", _figure("idle_pss_gib"), "<", 1.0,
           lambda v: f"{v:.2f} GiB"),
    Target("single POSTs vs a no-op Serve endpoint", _figure("single_post_ratio"), "≥", 1.0,
           _times),
)


def evaluate(figures: Figures, targets: tuple[Target, ...] = TARGETS) -> list[Verdict]:
    unknown = set(figures) - set(FIGURES)
    if unknown:  # a misspelt figure would read as "not run" forever
        raise KeyError(f"figures not in bench.targets.FIGURES: {sorted(unknown)}")
    return [target.judge(figures) for target in targets]


def table(verdicts: list[Verdict]) -> str:
    """Markdown, as docs/performance.md quotes it."""
    return markdown([("figure", "measured", "target", "met"),
                     *((v.figure, v.measured, v.target, v.status) for v in verdicts)])


def markdown(rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, columns aligned: the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
