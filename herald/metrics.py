"""Counters and a latency histogram, and their Prometheus text exposition."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(slots=True)
class Histogram:
    """Cumulative-friendly bucket counts, mergeable across shards."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.count += 1

    def merge(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.count += other.count

    def to_dict(self) -> dict[str, object]:
        return {"counts": list(self.counts), "total": self.total, "count": self.count}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Histogram:
        counts = data["counts"]
        assert isinstance(counts, list)
        return cls(counts=list(counts), total=float(str(data["total"])),
                   count=int(str(data["count"])))


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def render_prometheus(
    counters: Mapping[str, int],
    gauges: Iterable[tuple[str, Mapping[str, str], float]],
    latency: Histogram,
) -> str:
    """Prometheus text format 0.0.4 for Herald's counters, gauges and latency histogram."""
    lines: list[str] = []
    for name, value in sorted(counters.items()):
        metric = f"herald_{name}_total"
        lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
    seen: set[str] = set()
    for name, labels, gauge in gauges:
        metric = f"herald_{name}"
        if metric not in seen:
            lines.append(f"# TYPE {metric} gauge")
            seen.add(metric)
        lines.append(f"{metric}{_labels(labels)} {gauge}")
    metric = "herald_delivery_latency_seconds"
    lines.append(f"# TYPE {metric} histogram")
    cumulative = 0
    for bound, count in zip(latency.buckets, latency.counts, strict=False):
        cumulative += count
        lines.append(f'{metric}_bucket{{le="{bound}"}} {cumulative}')
    lines.append(f'{metric}_bucket{{le="+Inf"}} {latency.count}')
    lines.append(f"{metric}_sum {latency.total}")
    lines.append(f"{metric}_count {latency.count}")
    return "\n".join(lines) + "\n"
