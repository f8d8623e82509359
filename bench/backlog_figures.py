"""The backlog benchmark's figures (``bench.backlog``) and their arithmetic: processes sampled
from ``/proc``, summed per role, and each figure's lines. Pure but for ``sample``."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from bench.cpu import cpu_of
from bench.procinfo import read_proc

#: Batch intake's shape: notifications per POST, client connections posting at once.
BATCH, CLIENTS, MIB = 1000, 4, 2**20


class Sample(NamedTuple):  # one process (or a sum) at one moment: bytes, and CPU seconds so far
    role: str
    rss: int
    pss: int
    cpu: float


def sample(pids: Iterable[int], names: dict[int, str]) -> dict[int, Sample]:
    """Each live process's role (``names``, else procinfo's), memory and CPU time now."""
    return {pid: Sample(names.get(pid, info.role), info.rss_kib * 1024, info.pss_kib * 1024,
                        cpu_of([pid])) for pid in pids if (info := read_proc(pid)) is not None}


def total(samples: dict[int, Sample], pids: list[int]) -> Sample:
    return Sample("sum", *(sum(getattr(samples[p], w) for p in pids if p in samples)
                           for w in ("rss", "pss", "cpu")))


def by_role(before: dict[int, Sample], after: dict[int, Sample], value: str) -> dict[str, float]:
    """What each role's processes added between two samples (``cpu`` or ``rss``); gone is 0."""
    grown: dict[str, float] = {}
    for pid in before.keys() | after.keys():
        old, new = before.get(pid), after.get(pid)
        role = (new or old).role  # type: ignore[union-attr]  # one of them is there
        grown[role] = grown.get(role, 0) + getattr(new, value, 0) - getattr(old, value, 0)
    return grown


@dataclass(frozen=True, slots=True)
class IntakeFigure:
    median: float  # accepted/s: the figure
    rounds: list[float]  # accepted/s per round
    fill_rate: float | None  # accepted/s over the rest of the fill (None: not filled)
    cpu_ms_per_1000: dict[str, float]  # CPU ms per 1,000 accepted in the rounds, by role
    load: str
    store: str = "SQLite FULL"

    def lines(self) -> list[str]:
        rest = "" if self.fill_rate is None else f"; rest of the fill {self.fill_rate:,.0f}/s"
        return [f"batch intake, pools 0, {CLIENTS} clients x {BATCH}, {self.store}: median "
                f"{self.median:,.0f}/s (rounds {', '.join(f'{r:,.0f}' for r in self.rounds)}{rest})"
                f" [load {self.load}]",
                "  CPU ms per 1,000 accepted: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(
                    self.cpu_ms_per_1000.items(), key=lambda kv: -kv[1]) if v >= 1)]


@dataclass(frozen=True, slots=True)
class MemoryFigure:
    queued: list[int]  # notifications queued before the fill, half way, after
    shards: list[Sample]  # summed over the shard processes, the same three times
    grown: dict[str, float]  # RSS bytes each role of Herald's processes added over the fill
    load: str

    def per_notification(self, which: str = "rss", marginal: bool = False) -> float:
        """Bytes grown ÷ notifications added: over the whole fill, or over its second half."""
        grown = getattr(self.shards[2], which) - getattr(self.shards[first := int(marginal)], which)
        return float(grown / max(1, self.queued[2] - self.queued[first]))

    def lines(self) -> list[str]:
        before, after = self.shards[0], self.shards[2]
        per = {(w, m): self.per_notification(w, m) for w in ("rss", "pss") for m in (False, True)}
        ten_million = before.rss + per["rss", True] * 10_000_000  # the second half's cost, linearly
        return [f"memory, {self.queued[2]:,} queued: shards RSS {before.rss / MIB:,.0f} -> "
                f"{after.rss / MIB:,.0f} MiB = {per['rss', False]:.0f} B/notification (PSS "
                f"{per['pss', False]:.0f}; second half {per['rss', True]:.0f}) [load {self.load}]",
                f"  10 M queued (linear in the second half's cost): shards "
                f"{ten_million / 2**30:.2f} GiB RSS; whole Herald grew "
                f"{sum(self.grown.values()) / MIB:,.0f} MiB RSS: " + ", ".join(
                    f"{k} {v / MIB:+,.0f}" for k, v in sorted(self.grown.items(), key=lambda kv: -kv[1])
                    if abs(v) >= 5 * MIB)]


@dataclass(frozen=True, slots=True)
class RestartFigure:
    what: str
    queued: int
    process_s: float  # the new process answers (whole: Herald.start returned)
    ready_s: float  # the shard(s) recovered
    serving_s: float  # a POST routed to it (to each shard) got its 202
    load: str
    steps: str = ""  # whole: how long Herald.stop and each step of Herald.start took

    def lines(self) -> list[str]:
        return [f"{self.what} restart, {self.queued:,} queued: serving after {self.serving_s:.1f} s "
                f"(process {self.process_s:.1f} s, ready {self.ready_s:.1f} s{self.steps}) "
                f"[load {self.load}]"]


@dataclass(frozen=True, slots=True)
class LatencyFigure:
    what: str
    rate: float  # asap notifications offered per second
    latencies: list[float] = field(repr=False)  # accept→sent, seconds
    context: str = ""  # the max it is half of, or the backlog it overtook
    load: str = ""

    def lines(self) -> list[str]:
        ms = [statistics.quantiles(self.latencies, n=100, method="inclusive")[q] * 1000 for q in (49, 94, 98)]
        return [f"asap accept->sent, {self.what}, {self.rate:.0f}/s x {len(self.latencies)}: p50 {ms[0]:.0f}"
                f" ms, p95 {ms[1]:.0f} ms, p99 {ms[2]:.0f} ms ({self.context}) [load {self.load}]"]

