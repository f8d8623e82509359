"""herald.metrics: the snapshot, its aggregation, and the exposition read back by Prometheus' parser."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from herald.metrics import (
    LATENCY_BUCKETS,
    ChannelActorStats,
    Histogram,
    MetricsSnapshot,
    ShardStats,
    aggregate,
    render_prometheus,
)

HOSTILE = 'a"b\\c\nd'  # a quote, a backslash and a newline: each must be escaped


def _histogram(*seconds: float) -> Histogram:
    histogram = Histogram()
    for value in seconds:
        histogram.observe(value)
    return histogram


def _snapshot() -> MetricsSnapshot:
    shards = [
        ShardStats(0, {"EMAIL": {"queued": 2, "retrying": 1, "sending": 0}},
                   {"accepted": 5, "sent": 3, "failed": 1}, _histogram(0.02, 0.3, 0.3)),
        ShardStats(1, {"BROWSER.0": {"queued": 4, "retrying": 0, "sending": 1}},
                   {"accepted": 7, "sent": 4, "stale_acks": 2}, _histogram(1.0, 500.0)),
    ]
    actors = [
        ChannelActorStats("EMAIL", 0, {"sent": 6, "retry": 1}, {"smtp": "closed"}),
        ChannelActorStats("SMS", 1, {"sent": 2}, {"twilio": "open", HOSTILE: "half_open"}),
    ]
    return MetricsSnapshot(shards, actors, restarts={"queue": 1, "email": 2}, rejected=3)


def _families(snapshot: MetricsSnapshot) -> dict[str, Metric]:
    text = render_prometheus(snapshot).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(family: Metric, name: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples
            if name is None or s.name == name}


def test_names_types_and_help() -> None:
    families = _families(_snapshot())
    expected = {
        "herald_accepted": "counter", "herald_sent": "counter", "herald_failed": "counter",
        "herald_stale_acks": "counter", "herald_rejected": "counter",
        "herald_queue_depth": "gauge", "herald_actor_restarts": "gauge",
        "herald_channel_outcomes": "gauge", "herald_circuit_open": "gauge",
        "herald_delivery_latency_seconds": "histogram",
    }
    assert {name: f.type for name, f in families.items()} == expected
    for family in families.values():
        assert family.documentation.endswith("."), family.name  # a sentence, not a placeholder
    text = render_prometheus(_snapshot()).decode()
    for name in ("herald_accepted_total", "herald_rejected_total", "herald_queue_depth",
                 "herald_delivery_latency_seconds"):
        assert f"# HELP {name} " in text and f"# TYPE {name} " in text
    assert "herald_accepted_total 12.0" in text.splitlines()  # the exact exposed sample name


def test_counters_are_summed_over_shards() -> None:
    families = _families(_snapshot())

    def value(name: str) -> float:
        (sample,) = families[name].samples
        assert sample.name == f"{name}_total"
        return sample.value

    assert value("herald_accepted") == 12
    assert value("herald_sent") == 7
    assert value("herald_failed") == 1
    assert value("herald_stale_acks") == 2
    assert value("herald_rejected") == 3


def test_histogram_buckets_are_cumulative_and_inf_is_count() -> None:
    family = _families(_snapshot())["herald_delivery_latency_seconds"]
    buckets = [(s.labels["le"], s.value) for s in family.samples if s.name.endswith("_bucket")]
    assert [le for le, _ in buckets] == [*(str(b) for b in LATENCY_BUCKETS), "+Inf"]
    values = [v for _, v in buckets]
    assert values == sorted(values)  # cumulative: never decreasing
    assert dict(buckets)["0.025"] == 1 and dict(buckets)["0.5"] == 3 and dict(buckets)["1.0"] == 4
    assert dict(buckets)["300.0"] == 4  # 500 s lies above every bound: only in +Inf
    (count,) = _samples(family, "herald_delivery_latency_seconds_count").values()
    (total,) = _samples(family, "herald_delivery_latency_seconds_sum").values()
    assert values[-1] == count == 5
    assert total == 0.02 + 0.3 + 0.3 + 1.0 + 500.0


def test_hostile_label_values_are_escaped() -> None:
    snapshot = _snapshot()
    text = render_prometheus(snapshot).decode()
    lines = [line for line in text.splitlines() if line.startswith("herald_circuit_open{")]
    assert len(lines) == 3  # the newline did not split a sample over two lines
    assert 'provider="a\\"b\\\\c\\nd"' in text
    circuit = _samples(_families(snapshot)["herald_circuit_open"])
    assert circuit[(("actor", "1"), ("provider", HOSTILE))] == 0  # half_open is not open
    assert circuit[(("actor", "1"), ("provider", "twilio"))] == 1
    assert circuit[(("actor", "0"), ("provider", "smtp"))] == 0


def test_channel_labels_are_lower_case() -> None:
    families = _families(_snapshot())
    outcomes = _samples(families["herald_channel_outcomes"])
    assert outcomes[(("actor", "0"), ("channel", "email"), ("outcome", "sent"))] == 6
    assert outcomes[(("actor", "1"), ("channel", "sms"), ("outcome", "sent"))] == 2
    depth = _samples(families["herald_queue_depth"])
    assert depth[(("channel", "browser.0"), ("shard", "1"), ("state", "queued"))] == 4
    assert depth[(("channel", "email"), ("shard", "0"), ("state", "retrying"))] == 1
    for family in families.values():
        for sample in family.samples:
            channel = sample.labels.get("channel")
            assert channel is None or channel == channel.lower()


def test_restarts_per_pool() -> None:
    restarts = _samples(_families(_snapshot())["herald_actor_restarts"])
    assert restarts == {(("pool", "email"),): 2, (("pool", "queue"),): 1}


def test_empty_snapshot_still_describes_every_metric() -> None:
    families = _families(MetricsSnapshot((), (), {}, 0))
    assert "herald_queue_depth" in families and "herald_circuit_open" in families
    assert _samples(families["herald_rejected"]) == {(): 0}
    (count,) = _samples(families["herald_delivery_latency_seconds"],
                        "herald_delivery_latency_seconds_count").values()
    assert count == 0


def test_aggregate_sums_and_leaves_inputs_alone() -> None:
    snapshot = _snapshot()
    before = [s.latency.to_dict() for s in snapshot.shards]
    totals = aggregate(snapshot.shards)
    assert totals.counters == {"accepted": 12, "sent": 7, "failed": 1, "stale_acks": 2}
    assert totals.latency.count == 5
    assert sum(totals.latency.counts) == 5
    assert [s.latency.to_dict() for s in snapshot.shards] == before


def test_snapshot_parts_from_actor_dicts() -> None:
    """The dicts QueueActor.stats() and ChannelActor.ping() return become typed parts."""
    latency = _histogram(0.2)
    shard = ShardStats.from_dict({"shard": 2, "depth": {"SMS": {"queued": 1}},
                                  "counters": {"accepted": 1}, "latency": latency.to_dict()})
    assert shard == ShardStats(2, {"SMS": {"queued": 1}}, {"accepted": 1}, latency)
    actor = ChannelActorStats.from_dict({
        "pid": 1, "channel": "FAX", "index": 3, "started_at": 0.0, "inflight": 0,
        "breakers": {"telnyx": "open"}, "counters": {"sent": 4}})
    assert actor == ChannelActorStats("FAX", 3, {"sent": 4}, {"telnyx": "open"})


def test_rendering_leaves_the_global_registry_alone() -> None:
    render_prometheus(_snapshot())
    assert not any(family.name.startswith("herald_") for family in REGISTRY.collect())
