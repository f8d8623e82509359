"""actors.ray_metrics: cumulative counters become Ray Counter increments; depths become gauges.

The delta logic runs against fake metric objects; one test uses real ``ray.util.metrics``
objects without ``ray.init()`` to show the exporter is safe outside an actor.
"""

from __future__ import annotations

import logging

import pytest

from actors.ray_metrics import RayMetricsExporter


class FakeMetric:
    def __init__(self, name: str, description: str, tag_keys: tuple[str, ...]) -> None:
        self.name, self.description, self.tag_keys = name, description, tag_keys
        self.calls: list[tuple[float | None, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str]) -> None:
        assert value > 0, "Ray's Counter.inc refuses 0 and negative values"
        assert set(tags) == set(self.tag_keys)
        self.calls.append((value, dict(tags)))

    def set(self, value: float | None, tags: dict[str, str]) -> None:
        assert set(tags) == set(self.tag_keys)
        self.calls.append((value, dict(tags)))


class Fakes:
    """Metric factories that keep what they built, by name."""

    def __init__(self) -> None:
        self.metrics: dict[str, FakeMetric] = {}
        self.built: list[str] = []

    def __call__(self, name: str, description: str, tag_keys: tuple[str, ...]) -> FakeMetric:
        self.built.append(name)
        metric = self.metrics[name] = FakeMetric(name, description, tag_keys)
        return metric

    def values(self, name: str) -> list[float | None]:
        return [value for value, _ in self.metrics[name].calls]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def shard_exporter(fakes: Fakes, clock: Clock | None = None) -> RayMetricsExporter:
    return RayMetricsExporter.for_shard(counter_factory=fakes, gauge_factory=fakes,
                                        clock=clock or Clock())


def test_cumulative_values_become_increments() -> None:
    fakes = Fakes()
    exporter = shard_exporter(fakes)
    exporter.publish({"accepted": 3, "sent": 0}, tags={"shard": 1})
    exporter.publish({"accepted": 5, "sent": 0}, tags={"shard": 1})
    exporter.publish({"accepted": 5, "sent": 2}, tags={"shard": 1})
    assert fakes.metrics["herald_accepted"].calls == [(3, {"shard": "1"}), (2, {"shard": "1"})]
    assert fakes.values("herald_sent") == [2]  # zero and unchanged values record nothing
    assert fakes.metrics["herald_accepted"].tag_keys == ("shard",)
    assert fakes.metrics["herald_accepted"].description == "Notifications accepted into the queue."
    assert fakes.built.count("herald_accepted") == 1  # one metric object per name


def test_a_restarted_source_records_only_its_new_counts() -> None:
    fakes = Fakes()
    exporter = shard_exporter(fakes)
    exporter.publish({"accepted": 10}, tags={"shard": 0})
    exporter.publish({"accepted": 4}, tags={"shard": 0})  # started again from 0: 4 new ones
    exporter.publish({"accepted": 6}, tags={"shard": 0})
    assert fakes.values("herald_accepted") == [10, 4, 2]
    # The usual restart: a new actor process, a new exporter, counters from 0 again.
    again = Fakes()
    shard_exporter(again).publish({"accepted": 1}, tags={"shard": 0})
    assert again.values("herald_accepted") == [1]


def test_each_series_keeps_its_own_last_value() -> None:
    fakes = Fakes()
    exporter = shard_exporter(fakes)
    exporter.publish({"accepted": 3}, tags={"shard": 0})
    exporter.publish({"accepted": 1}, tags={"shard": 1})
    exporter.publish({"accepted": 4}, tags={"shard": 0})
    assert fakes.metrics["herald_accepted"].calls == [
        (3, {"shard": "0"}), (1, {"shard": "1"}), (1, {"shard": "0"})]


def test_depth_sets_gauges_and_zeroes_lanes_that_emptied() -> None:
    fakes = Fakes()
    exporter = shard_exporter(fakes)
    exporter.publish({}, {"EMAIL": {"queued": 2, "sending": 1}, "BROWSER.0": {"queued": 1}},
                     tags={"shard": 3})
    depth = fakes.metrics["herald_queue_depth"]
    assert depth.tag_keys == ("shard", "channel", "state")
    assert sorted(depth.calls, key=str) == sorted([
        (2, {"shard": "3", "channel": "email", "state": "queued"}),
        (1, {"shard": "3", "channel": "email", "state": "sending"}),
        (1, {"shard": "3", "channel": "browser.0", "state": "queued"}),
    ], key=str)
    depth.calls.clear()
    exporter.publish({}, {"EMAIL": {"queued": 0, "sending": 0}}, tags={"shard": 3})
    assert (0, {"shard": "3", "channel": "browser.0", "state": "queued"}) in depth.calls
    assert len(depth.calls) == 3
    depth.calls.clear()
    exporter.publish({}, {"EMAIL": {"queued": 0, "sending": 0}}, tags={"shard": 3})
    assert len(depth.calls) == 2  # the emptied lane was zeroed once, not forever


def test_channel_actor_outcomes_and_breakers() -> None:
    fakes = Fakes()
    exporter = RayMetricsExporter.for_channel_actor(counter_factory=fakes, gauge_factory=fakes)
    tags = {"channel": "EMAIL", "actor": 0}
    exporter.publish({"sent": 2, "retry": 0}, tags=tags, breakers={"smtp": "open"})
    exporter.publish({"sent": 5, "retry": 1}, tags=tags, breakers={"smtp": "half_open"})
    outcomes = fakes.metrics["herald_channel_outcomes"]
    assert outcomes.tag_keys == ("channel", "actor", "outcome")
    assert outcomes.calls == [
        (2, {"channel": "email", "actor": "0", "outcome": "sent"}),
        (3, {"channel": "email", "actor": "0", "outcome": "sent"}),
        (1, {"channel": "email", "actor": "0", "outcome": "retry"}),
    ]
    circuit = fakes.metrics["herald_circuit_open"]
    assert circuit.tag_keys == ("provider", "actor")
    assert circuit.calls == [(1, {"provider": "smtp", "actor": "0"}),
                             (0, {"provider": "smtp", "actor": "0"})]


def test_due_after_the_interval() -> None:
    clock = Clock()
    exporter = RayMetricsExporter.for_shard(counter_factory=Fakes(), gauge_factory=Fakes(),
                                            clock=clock, interval=5.0)
    assert exporter.due()  # the first tick publishes at once
    exporter.publish({}, tags={"shard": 0})
    clock.now += 4.9
    assert not exporter.due()
    clock.now += 0.1
    assert exporter.due()


def test_publish_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    def broken(name: str, description: str, tag_keys: tuple[str, ...]) -> FakeMetric:
        raise RuntimeError("no metrics today")

    exporter = RayMetricsExporter.for_shard(counter_factory=broken, gauge_factory=broken)
    with caplog.at_level(logging.WARNING, logger="herald.ray_metrics"):
        exporter.publish({"accepted": 1}, {"EMAIL": {"queued": 1}}, tags={"shard": 0})
        exporter.publish({"accepted": 2}, tags={"shard": 0})
        exporter.publish({"accepted": 2}, tags={})  # a missing tag value
    assert len(caplog.records) == 1  # warned once, not on every tick


def test_real_ray_metrics_record_with_or_without_ray_init(caplog: pytest.LogCaptureFixture) -> None:
    """Real ``ray.util.metrics`` objects: recording never fails, whether or not this process
    has joined Ray (the full suite has a session Ray by the time the unit tests run)."""
    ray = pytest.importorskip("ray")
    was_initialized = ray.is_initialized()
    shard = RayMetricsExporter.for_shard()
    channel = RayMetricsExporter.for_channel_actor()
    with caplog.at_level(logging.WARNING, logger="herald.ray_metrics"):
        for accepted in (3, 5, 5, 1):
            shard.publish({"accepted": accepted, "sent": 0}, {"EMAIL": {"queued": accepted}},
                          tags={"shard": 0})
            channel.publish({"sent": accepted}, tags={"channel": "SMS", "actor": 1},
                            breakers={"twilio": "closed"})
    assert not caplog.records  # nothing failed (publish would have logged it)
    assert ray.is_initialized() == was_initialized  # and it did not start or join Ray
