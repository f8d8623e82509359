"""Counters and a latency histogram, and their Prometheus text exposition.

The exposition is a pure function of a typed :class:`MetricsSnapshot`: nothing is read from
module state or from prometheus_client's global ``REGISTRY`` (each render uses a private
registry), so whoever builds the snapshot decides what it covers. Today that is the whole
service; a per-tenant view later is just a snapshot built from one tenant's figures.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# Metric names, shared with actors/ray_metrics.py so both exports say the same thing.
PREFIX = "herald"
QUEUE_DEPTH = "herald_queue_depth"
ACTOR_RESTARTS = "herald_actor_restarts"
CHANNEL_OUTCOMES = "herald_channel_outcomes"
CIRCUIT_OPEN = "herald_circuit_open"
DELIVERY_LATENCY = "herald_delivery_latency_seconds"

#: HELP text of each queue-shard counter (``herald_<name>_total``) and of intake's ``rejected``.
COUNTER_HELP: Mapping[str, str] = {
    "accepted": "Notifications accepted into the queue.",
    "sent": "Notifications a provider took for delivery.",
    "delivered": "Notifications confirmed delivered (a provider receipt or a browser ack).",
    "failed": "Notifications that failed for good (permanent error or expiry).",
    "dead": "Notifications dead-lettered after their attempt budget ran out.",
    "retried": "Delivery attempts that failed transiently and were scheduled again.",
    "cancelled": "Notifications cancelled by their sender before they left.",
    "expired": "Notifications that reached their ttl before being delivered.",
    "suppressed": "Notifications never sent: a preference, an unsubscribe or a suppressed contact.",
    "bounced": "Emails sent whose delivery status notification said they failed for good.",
    "stale_acks": "Delivery outcomes ignored because their lease had expired or been replaced.",
    "duplicates_refused": "Enqueues answered with an existing notification (same tag or key).",
    "store_commits": "Transactions the shards committed to their store (group commits).",
    "shard_calls": "Calls the queue shards answered that moved or read notifications (figures not counted).",
    "rejected": "Valid notifications the queue refused (queue full), counted by this API replica.",
}
DEPTH_HELP = "Live notifications per queue shard, channel lane and state."
RESTARTS_HELP = "Actor restarts the Supervisor has seen per pool since it started."
OUTCOMES_HELP = "Delivery outcomes per channel actor since that actor (re)started."
CIRCUIT_HELP = "Whether a provider's circuit breaker is open (1) or not (0), per channel actor."
LATENCY_HELP = "Seconds from acceptance to sent or delivered, per notification."


def channel_label(channel: str) -> str:
    """The ``channel`` label value: lower-case (``EMAIL`` → ``email``, ``BROWSER.0`` → ``browser.0``)."""
    return channel.lower()


def counter_help(name: str) -> str:
    """HELP text of counter ``name``; a counter added later still gets a sentence."""
    return COUNTER_HELP.get(name, f"Notifications counted as {name} by the queue shards.")


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


# -- the snapshot -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ShardStats:
    """One queue shard's figures (``QueueActor.stats()``)."""

    shard: int
    depth: Mapping[str, Mapping[str, int]]  # lane ("EMAIL", "BROWSER.0"…) → state → count
    counters: Mapping[str, int]  # cumulative since the shard actor started
    latency: Histogram

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardStats:
        return cls(
            shard=int(data["shard"]),
            depth={lane: {state: int(n) for state, n in states.items()}
                   for lane, states in data["depth"].items()},
            counters={name: int(n) for name, n in data["counters"].items()},
            latency=Histogram.from_dict(data["latency"]),
        )


@dataclass(frozen=True, slots=True)
class ChannelActorStats:
    """One channel actor's figures (its ``ping()`` answer, via ``Supervisor.channel_stats()``)."""

    channel: str
    index: int
    counters: Mapping[str, int]  # outcome kind → count since this actor (re)started
    breakers: Mapping[str, str]  # provider → "closed" | "open" | "half_open"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelActorStats:
        return cls(
            channel=str(data["channel"]),
            index=int(data["index"]),
            counters={kind: int(n) for kind, n in data.get("counters", {}).items()},
            breakers={str(p): str(s) for p, s in data.get("breakers", {}).items()},
        )


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything ``/metrics`` shows, gathered from the actors at one moment."""

    shards: Sequence[ShardStats]
    channel_actors: Sequence[ChannelActorStats]
    restarts: Mapping[str, int]  # pool → restarts (Supervisor.describe())
    rejected: int  # intake's refusals (per API replica)


@dataclass(frozen=True, slots=True)
class Totals:
    """The shards' counters summed and their latency histograms merged."""

    counters: Mapping[str, int]
    latency: Histogram


def aggregate(shards: Iterable[ShardStats]) -> Totals:
    """Sum counters and merge latency over ``shards``; the inputs are left untouched."""
    counters: dict[str, int] = {}
    latency = Histogram()
    for stats in shards:
        for name, value in stats.counters.items():
            counters[name] = counters.get(name, 0) + value
        latency.merge(stats.latency)  # merge() reads its argument, never writes it
    return Totals(counters, latency)


# -- exposition -------------------------------------------------------------------------------
def _latency_family(latency: Histogram) -> HistogramMetricFamily:
    # Prometheus buckets are cumulative (``le`` = at most); our counts are per bucket, the
    # last one being everything above the largest bound, so +Inf always equals count.
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip(latency.buckets, latency.counts, strict=False):
        cumulative += count
        buckets.append((floatToGoString(bound), cumulative))
    buckets.append(("+Inf", latency.count))
    return HistogramMetricFamily(DELIVERY_LATENCY, LATENCY_HELP, buckets=buckets,
                                 sum_value=latency.total)


def families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    """The metric families of ``snapshot``, in a stable order."""
    totals = aggregate(snapshot.shards)
    counters = dict(totals.counters)
    counters["rejected"] = counters.get("rejected", 0) + snapshot.rejected
    for name, value in sorted(counters.items()):
        # CounterMetricFamily appends the ``_total`` suffix: herald_accepted → herald_accepted_total.
        yield CounterMetricFamily(f"{PREFIX}_{name}", counter_help(name), value=value)

    depth = GaugeMetricFamily(QUEUE_DEPTH, DEPTH_HELP, labels=("shard", "channel", "state"))
    for shard in snapshot.shards:
        for lane, states in sorted(shard.depth.items()):
            for state, count in sorted(states.items()):
                depth.add_metric((str(shard.shard), channel_label(lane), state), count)
    yield depth

    # The next two count events but stay gauges: their exposed names are fixed (dashboards,
    # tests) and a prometheus_client counter is always exposed with a ``_total`` suffix.
    restarts = GaugeMetricFamily(ACTOR_RESTARTS, RESTARTS_HELP, labels=("pool",))
    for pool, count in sorted(snapshot.restarts.items()):
        restarts.add_metric((pool,), count)
    yield restarts

    outcomes = GaugeMetricFamily(CHANNEL_OUTCOMES, OUTCOMES_HELP,
                                 labels=("channel", "actor", "outcome"))
    circuit = GaugeMetricFamily(CIRCUIT_OPEN, CIRCUIT_HELP,
                                labels=("provider", "actor"))
    for actor in sorted(snapshot.channel_actors, key=lambda a: (a.channel, a.index)):
        for outcome, count in sorted(actor.counters.items()):
            outcomes.add_metric((channel_label(actor.channel), str(actor.index), outcome), count)
        for provider, state in sorted(actor.breakers.items()):
            circuit.add_metric((provider, str(actor.index)), 1 if state == "open" else 0)
    yield outcomes
    yield circuit

    yield _latency_family(totals.latency)


class _SnapshotCollector:
    """A prometheus_client collector over one snapshot (``collect`` is all the registry needs)."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return families(self._snapshot)


def render_prometheus(snapshot: MetricsSnapshot) -> bytes:
    """The Prometheus text exposition of ``snapshot`` (names and label values escaped by the library)."""
    registry = CollectorRegistry(auto_describe=False)  # private: never the process-global REGISTRY
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
