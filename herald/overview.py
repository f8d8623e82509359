"""The admin console's overview: the service's figures at one moment, their rates and history.

Each shard answers its ``ShardFigures``; the Supervisor says which channel actors run, how often
they restarted and which circuits are open. ``build_overview`` puts them together as the JSON of
``GET /v1/admin/overview``; a ``RateTracker`` turns the shards' cumulative counters into rates
(a restarted shard's counters start again at 0: its new counts are added, nothing is
subtracted) and keeps the last minutes of points for the live charts; ``notable`` compares two
overviews and says what an operator should hear about (new dead letters, a paused channel, a
shard not answering, an actor restarted, a circuit opened). Pure: time is passed in.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from herald.actor_names import actor_prefix
from herald.channels import Channel
from herald.metrics import ChannelActorStats
from herald.pool_views import SupervisorView

__all__ = ["RATES", "RateTracker", "ShardFigures", "build_overview", "notable"]

#: Rate name → the shard counters it sums.
RATES: dict[str, tuple[str, ...]] = {
    "incoming": ("accepted",), "sent": ("sent",), "delivered": ("delivered",),
    "failed": ("failed", "dead"), "retried": ("retried",),
    # Final too: never sent (the recipient opted out, the contact is suppressed), or came back.
    "suppressed": ("suppressed",), "bounced": ("bounced",),
}
WAITING_STATES = ("queued", "retrying", "sending")


@dataclass(frozen=True, slots=True)
class ShardFigures:
    """One shard's figures for the overview (``QueueActor.admin_stats``)."""

    shard: int
    #: Channel (``EMAIL``) → state (queued, retrying, sending) → live records.
    depth: Mapping[str, Mapping[str, int]]
    #: Cumulative since the shard actor started (``herald.shard_state.COUNTERS``).
    counters: Mapping[str, int]
    #: Channel key (``email``) → ``created_at`` of its oldest waiting notification.
    oldest_waiting: Mapping[str, float] = field(default_factory=dict)
    dead_letters: int = 0
    #: Channel key → when it was paused on this shard.
    paused: Mapping[str, float] = field(default_factory=dict)


class RateTracker:
    """Cumulative totals over restarts, rates over ``window`` seconds, ``keep`` seconds of points."""

    def __init__(self, window: float = 10.0, keep: float = 600.0) -> None:
        self.window, self.keep = window, keep
        self._last: dict[int, Mapping[str, int]] = {}  # shard → its counters last time
        self._totals: dict[str, int] = dict.fromkeys(RATES, 0)
        self._points: deque[tuple[float, dict[str, int], int]] = deque()  # (at, totals, depth)

    def add(self, now: float, shards: Sequence[ShardFigures]) -> None:
        for figures in shards:
            before = self._last.get(figures.shard, {})
            for rate, names in RATES.items():
                for name in names:
                    now_n, then_n = figures.counters.get(name, 0), before.get(name, 0)
                    # Smaller than before: the shard restarted and counts from 0 again.
                    self._totals[rate] += now_n - then_n if now_n >= then_n else now_n
            self._last[figures.shard] = dict(figures.counters)
        depth = sum(n for f in shards for states in f.depth.values()
                    for state, n in states.items() if state in WAITING_STATES)
        self._points.append((now, dict(self._totals), depth))
        while self._points and self._points[0][0] < now - self.keep:
            self._points.popleft()

    def rates(self) -> dict[str, float]:
        """Per second over the last ``window`` seconds (or what there is of it)."""
        if len(self._points) < 2:
            return dict.fromkeys(RATES, 0.0)
        now, totals, _ = self._points[-1]
        then, before, _ = next((p for p in self._points if p[0] >= now - self.window),
                               self._points[0])
        if then >= now:
            then, before, _ = self._points[-2]
        seconds = max(now - then, 1e-9)
        return {rate: round((totals[rate] - before[rate]) / seconds, 3) for rate in RATES}

    def history(self) -> list[dict[str, float]]:
        """One point per sample: rates since the previous sample, and the waiting depth."""
        points = list(self._points)
        out = []
        for (then, before, _), (now, totals, depth) in itertools.pairwise(points):
            seconds = max(now - then, 1e-9)
            out.append({"at": now, "depth": depth} | {
                rate: round((totals[rate] - before[rate]) / seconds, 3) for rate in RATES})
        return out


def _channel_rows(shards: Sequence[ShardFigures], pools: Mapping[str, int],
                  restarts: Mapping[str, int], actors: Sequence[ChannelActorStats],
                  now: float, draining: Sequence[str] = ()) -> list[dict[str, Any]]:
    rows = []
    for channel in Channel:
        key = channel.key
        states = {state: sum(f.depth.get(channel.value, {}).get(state, 0) for f in shards)
                  for state in WAITING_STATES}
        oldest = [f.oldest_waiting[key] for f in shards if key in f.oldest_waiting]
        paused = [f.paused[key] for f in shards if key in f.paused]
        mine = [a for a in actors if a.channel.lower() == key]
        circuits = sorted({p for a in mine for p, state in a.breakers.items() if state == "open"})
        rows.append({
            "channel": key, **states,
            "oldest_queued_age": round(now - min(oldest), 3) if oldest else None,
            "paused": bool(paused), "paused_since": min(paused) if paused else None,
            "paused_shards": len(paused),
            # draining: actors a shrink took out of the pool, finishing their sends before they go.
            "pool": {"size": pools.get(key, 0), "running": len(mine),
                     "draining": sum(name.startswith(actor_prefix(channel)) for name in draining),
                     "restarts": restarts.get(key, 0), "open_circuits": circuits},
        })
    return rows


def build_overview(now: float, shards: Sequence[ShardFigures | None],
                   supervisor: SupervisorView | None, actors: Sequence[ChannelActorStats],
                   tracker: RateTracker, down: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The overview's JSON; a shard that did not answer is ``None`` (shown as not up, with why
    from ``down``: shard → reason, e.g. a failed start being retried)."""
    down = down or {}
    supervisor = supervisor or SupervisorView()  # one that did not answer: nothing known
    up = [f for f in shards if f is not None]
    channels = _channel_rows(up, supervisor.pools, supervisor.restarts, actors, now,
                             supervisor.draining)
    ages = [c["oldest_queued_age"] for c in channels if c["oldest_queued_age"] is not None]
    totals: dict[str, int] = {}
    for figures in up:
        for name, n in figures.counters.items():
            totals[name] = totals.get(name, 0) + n
    return {
        "at": now,
        "rates": tracker.rates(),
        "counters": totals,
        "depth": {state: sum(c[state] for c in channels) for state in WAITING_STATES},
        "oldest_queued_age": max(ages) if ages else None,
        "retries_pending": sum(c["retrying"] for c in channels),
        "dead_letters": sum(f.dead_letters for f in up),
        "paused": [c["channel"] for c in channels if c["paused"]],
        "channels": channels,
        "shards": [
            {"shard": i, "up": figures is not None,
             "depth": ({ch: sum(n for state, n in states.items() if state in WAITING_STATES)
                        for ch, states in figures.depth.items()} if figures else {}),
             "dead_letters": figures.dead_letters if figures else None,
             "reason": None if figures else down.get(i, "not answering")}
            for i, figures in enumerate(shards)
        ],
        "restarts": dict(supervisor.restarts),
        # The Supervisor's health checks done since it started: it goes on while a pool drains.
        "health_rounds": supervisor.health_rounds,
        "history": tracker.history(),
    }


def notable(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What changed between two overviews that an operator should hear about."""
    if before is None:
        return []
    at = now["at"]
    events: list[dict[str, Any]] = []

    def say(level: str, text: str) -> None:
        events.append({"at": at, "level": level, "text": text})

    dead = now["dead_letters"] - before["dead_letters"]
    if dead > 0:
        say("error", f"{dead} new dead letter{'s' if dead > 1 else ''}")
    for channel in sorted(set(now["paused"]) - set(before["paused"])):
        say("warn", f"{channel} paused: nothing is sent until it is resumed")
    for channel in sorted(set(before["paused"]) - set(now["paused"])):
        say("info", f"{channel} resumed")
    for old, new in zip(before["shards"], now["shards"], strict=False):
        if old["up"] and not new["up"]:
            reason = new.get("reason") or "not answering"
            say("error", f"shard {new['shard']} is not answering" if reason == "not answering"
                else f"shard {new['shard']} is down: {reason}")
        elif new["up"] and not old["up"]:
            say("info", f"shard {new['shard']} is answering again")
    for pool, count in sorted(now["restarts"].items()):
        more = count - before["restarts"].get(pool, 0)
        if more > 0:
            say("warn", f"{pool}: {more} actor restart{'s' if more > 1 else ''} ({count} in all)")
    was = {c["channel"]: set(c["pool"]["open_circuits"]) for c in before["channels"]}
    for row in now["channels"]:
        opened = set(row["pool"]["open_circuits"]) - was.get(row["channel"], set())
        closed = was.get(row["channel"], set()) - set(row["pool"]["open_circuits"])
        for provider in sorted(opened):
            say("error", f"circuit open: {provider} ({row['channel']})")
        for provider in sorted(closed):
            say("info", f"circuit closed: {provider} ({row['channel']})")
    return events
