"""Herald's figures as Ray metrics, so Ray's own Prometheus endpoint and dashboard show them too.

Shard and channel actors keep *cumulative* counters (since the actor started) and compute them
anyway for ``/metrics``. Ray's ``Counter`` takes *increments*, so :class:`RayMetricsExporter`
remembers the last value of every series and records the difference, from the actor's periodic
timer — never per message. A value lower than the last one means its source started again from
0 (an actor restart: the exporter lives in the actor, so it normally starts afresh too); the new
value is then the increment, which is how Prometheus itself treats counter resets.

Names: Ray prefixes every custom metric with ``ray_`` and exposes a Counter with a ``_total``
suffix, so ``Counter("herald_accepted")`` is scraped as ``ray_herald_accepted_total``. We pass
names without ``_total`` (the OpenCensus exporter would make it ``..._total_total``) and keep the
``herald_`` part so our series stay apart from Ray's own. Tag keys are those of ``/metrics``.

Not mirrored: the latency histogram (Ray's Histogram only takes single observations, i.e. one
call per message), intake's ``rejected`` and the Supervisor's restarts (neither is a shard or a
channel actor).

``ray.util.metrics`` objects can be created and recorded in any process, also without
``ray.init()`` (the points then go nowhere), so nothing here needs a running actor.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from herald.metrics import (
    CHANNEL_OUTCOMES,
    CIRCUIT_HELP,
    CIRCUIT_OPEN,
    DEPTH_HELP,
    OUTCOMES_HELP,
    PREFIX,
    QUEUE_DEPTH,
    channel_label,
    counter_help,
)

log = logging.getLogger("herald.ray_metrics")
PUBLISH_INTERVAL = 5.0  # seconds; Ray's own export runs every few seconds anyway

Tags = dict[str, str]
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # metric name, sorted tag items


class CounterLike(Protocol):
    def inc(self, value: int | float, tags: Tags) -> object: ...


class GaugeLike(Protocol):
    def set(self, value: int | float | None, tags: Tags) -> object: ...


CounterFactory = Callable[[str, str, tuple[str, ...]], CounterLike]
GaugeFactory = Callable[[str, str, tuple[str, ...]], GaugeLike]


def ray_counter(name: str, description: str, tag_keys: tuple[str, ...]) -> CounterLike:
    from ray.util.metrics import Counter  # imported late: tests with fakes need no Ray

    return Counter(name, description=description, tag_keys=tag_keys)


def ray_gauge(name: str, description: str, tag_keys: tuple[str, ...]) -> GaugeLike:
    from ray.util.metrics import Gauge

    return Gauge(name, description=description, tag_keys=tag_keys)


def _key(name: str, tags: Tags) -> SeriesKey:
    return name, tuple(sorted(tags.items()))


class RayMetricsExporter:
    """Turns an actor's cumulative counters and current depths into Ray metric records.

    Build one per actor with :meth:`for_shard` or :meth:`for_channel_actor`; call
    ``if exporter.due(): exporter.publish(...)`` from a loop that already runs. ``publish``
    never raises: metrics must not take the actor's timer down with them.
    """

    def __init__(
        self,
        tag_keys: Sequence[str],
        *,
        outcome_label: str | None = None,
        interval: float = PUBLISH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        counter_factory: CounterFactory = ray_counter,
        gauge_factory: GaugeFactory = ray_gauge,
    ) -> None:
        """``outcome_label`` set: every counter is one series of ``herald_channel_outcomes``
        with that label; unset: each counter ``name`` is its own metric ``herald_<name>``."""
        self._tag_keys = tuple(tag_keys)
        self._outcome_label = outcome_label
        self._interval = interval
        self._clock = clock
        self._counter_factory = counter_factory
        self._gauge_factory = gauge_factory
        self._counters: dict[str, CounterLike] = {}
        self._gauges: dict[str, GaugeLike] = {}
        self._last: dict[SeriesKey, int] = {}  # cumulative value last seen per counter series
        self._gauge_series: dict[SeriesKey, set[SeriesKey]] = {}  # (gauge, actor) → series set
        self._published_at = -math.inf
        self._warned = False

    @classmethod
    def for_shard(cls, **options: Any) -> RayMetricsExporter:
        """``herald_<counter>{shard}`` and ``herald_queue_depth{shard,channel,state}``."""
        return cls(("shard",), **options)

    @classmethod
    def for_channel_actor(cls, **options: Any) -> RayMetricsExporter:
        """``herald_channel_outcomes{channel,actor,outcome}`` and ``herald_circuit_open{provider,actor}``."""
        return cls(("channel", "actor"), outcome_label="outcome", **options)

    # -- metric objects (created once per name: Ray registers each on creation) -------------
    def _counter(self, name: str, description: str, tag_keys: tuple[str, ...]) -> CounterLike:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = self._counter_factory(name, description, tag_keys)
        return counter

    def _gauge(self, name: str, description: str, tag_keys: tuple[str, ...]) -> GaugeLike:
        gauge = self._gauges.get(name)
        if gauge is None:
            gauge = self._gauges[name] = self._gauge_factory(name, description, tag_keys)
        return gauge

    # -- publishing ---------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether ``interval`` has passed since the last publish (cheap: call it every tick)."""
        return self._clock() - self._published_at >= self._interval

    def publish(
        self,
        counters: Mapping[str, int],
        depth: Mapping[str, Mapping[str, int]] | None = None,
        *,
        tags: Mapping[str, str | int],
        breakers: Mapping[str, str] | None = None,
    ) -> None:
        """Record what changed since the last call.

        ``counters``: cumulative values; ``depth``: lane → state → live count (shards);
        ``breakers``: provider → breaker state (channel actors); ``tags``: this actor's tag
        values for the exporter's tag keys (``{"shard": 3}``, ``{"channel": "EMAIL", "actor": 0}``).
        """
        self._published_at = self._clock()
        try:
            base = self._tags(tags)
            self._publish_counters(counters, base)
            if depth is not None:
                self._publish_depth(depth, base)
            if breakers is not None:
                self._publish_breakers(breakers, base)
        except Exception:  # a metrics hiccup must not stop the caller's loop
            if not self._warned:
                log.warning("publishing Ray metrics failed; continuing without", exc_info=True)
                self._warned = True

    def _tags(self, tags: Mapping[str, str | int]) -> Tags:
        missing = set(self._tag_keys) - set(tags)
        if missing:
            raise ValueError(f"missing tag values for {sorted(missing)}")
        out = {key: str(tags[key]) for key in self._tag_keys}  # Ray insists on str values
        if "channel" in out:
            out["channel"] = channel_label(out["channel"])
        return out

    def _publish_counters(self, counters: Mapping[str, int], base: Tags) -> None:
        for name, value in counters.items():
            if self._outcome_label is None:
                metric_name, series = f"{PREFIX}_{name}", base
                metric = self._counter(metric_name, counter_help(name), self._tag_keys)
            else:
                metric_name, series = CHANNEL_OUTCOMES, {**base, self._outcome_label: name}
                metric = self._counter(metric_name, OUTCOMES_HELP,
                                       (*self._tag_keys, self._outcome_label))
            key = _key(metric_name, series)
            last = self._last.get(key, 0)
            delta = value - last if value >= last else value  # lower: the source restarted at 0
            self._last[key] = value
            if delta > 0:  # Ray's Counter.inc refuses 0 and negative values
                metric.inc(delta, tags=series)

    def _set_gauges(self, name: str, description: str, tag_keys: tuple[str, ...], base: Tags,
                    values: Mapping[SeriesKey, tuple[Tags, float]]) -> None:
        """Set every series in ``values``; one this actor set before but no longer reports
        (a lane that emptied) goes to 0, else Ray would keep showing its last value."""
        gauge = self._gauge(name, description, tag_keys)
        for tags, value in values.values():
            gauge.set(value, tags=tags)
        owner = _key(name, base)
        for key in self._gauge_series.get(owner, set()) - set(values):
            gauge.set(0, tags=dict(key[1]))
        self._gauge_series[owner] = set(values)

    def _publish_depth(self, depth: Mapping[str, Mapping[str, int]], base: Tags) -> None:
        values: dict[SeriesKey, tuple[Tags, float]] = {}
        for lane, states in depth.items():
            for state, count in states.items():
                tags = {**base, "channel": channel_label(lane), "state": state}
                values[_key(QUEUE_DEPTH, tags)] = (tags, count)
        self._set_gauges(QUEUE_DEPTH, DEPTH_HELP, (*self._tag_keys, "channel", "state"), base,
                         values)

    def _publish_breakers(self, breakers: Mapping[str, str], base: Tags) -> None:
        # Same tag keys as /metrics' herald_circuit_open: provider and actor (not channel).
        values: dict[SeriesKey, tuple[Tags, float]] = {}
        for provider, state in breakers.items():
            tags = {"provider": provider, "actor": base["actor"]}
            values[_key(CIRCUIT_OPEN, tags)] = (tags, 1 if state == "open" else 0)
        self._set_gauges(CIRCUIT_OPEN, CIRCUIT_HELP, ("provider", "actor"), base, values)
