"""The report's numbers: pure pandas over one row per notification, no I/O.

:class:`Tally` takes the notifications of one channel at a time (see ``analytics.scan``), keeps
small aggregates of them (counts by channel, type, service, provider, last final state and
retries; counts by accepted hour; suppressed ones by reason; latency values) and turns them into
the JSON-ready numbers.
What each number means is in :data:`DEFINITIONS`, which every report carries.

Latency percentiles are exact (``numpy.percentile``, linear interpolation) over float64 arrays
of one value per successful notification: 8 bytes each, ~25 MB for 3 million, selected in
O(n). A t-digest would save that memory but give approximate answers that no test can hold to
a number, for no change a reader could see.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from herald.channels import CLIENT_CHANNELS
from herald.log_schema import SCHEMA_VERSION
from herald.status import Status

CHANNELS = tuple(channel.key for channel in CLIENT_CHANNELS)
FINAL_STATES = tuple(status.value for status in Status if status.final)
SUCCESS = (Status.SENT.value, Status.DELIVERED.value)
#: Final states that say nothing of delivery (never attempted): out of the success rate.
NOT_ATTEMPTED = (Status.SUPPRESSED.value,)
#: A notification accepted in the window that has no final state by its end.
PENDING = "pending"
#: The label of a missing provider or requester service.
NONE = "(none)"
RETRY_BUCKETS = ("0", "1", "2", "3+")
PERCENTILES = (50, 95, 99)
TOP = 10
_DIMENSIONS = ["channel", "type", "service", "provider", "status", "retries"]

DEFINITIONS = {
    "notifications": "notifications whose 'accepted' event is inside the window, each counted "
                     "once, with what else happened to it inside the window",
    "state": "a notification's last 'final' event in the window (by 'at', then event id); "
             "'pending' when it has none yet",
    "success_rate": "(sent + delivered) / notifications with a final state; pending ones and "
                    "suppressed ones (never attempted: the recipient opted out or cannot take "
                    "it) are left out, null when there are none",
    "latency_ms": "milliseconds from acceptance to the first 'final' event with status sent "
                  "or delivered (accept_to_sent / accept_to_delivered: to the first of that "
                  "status); p50/p95/p99 are exact, linear interpolation",
    "retries": "'attempt' events with status retry, per notification",
    "top_errors": "error codes of 'attempt' events in the window (each failed or retried "
                  "attempt once)",
    "volume_per_hour": "notifications accepted per UTC hour and channel",
    "duplicate_rows": "rows seen twice (same shard and event id) and counted once",
    "suppressed_by_reason": "notifications whose state is suppressed, by the reason their final "
                            "event gives (its error code: preference, manual, bounced, "
                            "complained, stop), overall and by channel",
    "bounced": "notifications whose state is bounced: sent, then a delivery status "
               "notification said the mail failed for good",
}


class Tally:
    """Small aggregates of the notifications seen so far; :meth:`numbers` reads them out."""

    def __init__(self) -> None:
        self.rows = 0
        self.duplicate_rows = 0
        self.first_at: datetime | None = None
        self.last_at: datetime | None = None
        self._outcomes: list[pd.Series] = []
        self._hourly: list[pd.Series] = []
        self._reasons: list[pd.Series] = []
        self._errors: Counter[str] = Counter()
        self._latency: dict[tuple[str, str], list[np.ndarray]] = {}

    def add_rows(self, rows: int, duplicates: int, first_at: datetime | None,
                 last_at: datetime | None) -> None:
        self.rows += rows
        self.duplicate_rows += duplicates
        if first_at is not None and (self.first_at is None or first_at < self.first_at):
            self.first_at = first_at
        if last_at is not None and (self.last_at is None or last_at > self.last_at):
            self.last_at = last_at

    def add_errors(self, counts: Mapping[str, int]) -> None:
        self._errors.update(counts)

    def add_notifications(self, frame: pd.DataFrame) -> None:
        """Columns: channel, type, service, accepted_at, retries, final_status, final_provider,
        final_code, sent_ms, delivered_ms (the shape of ``analytics.scan.notifications``)."""
        if frame.empty:
            return
        keys = pd.DataFrame({
            "channel": _labels(frame["channel"], NONE),
            "type": _labels(frame["type"], NONE),
            "service": _labels(frame["service"], NONE),
            "provider": _labels(frame["final_provider"], NONE),
            "status": _labels(frame["final_status"], PENDING),
            "retries": np.minimum(frame["retries"].to_numpy(), len(RETRY_BUCKETS) - 1),
        })
        self._outcomes.append(keys.groupby(_DIMENSIONS, observed=True).size())
        suppressed = (keys["status"] == Status.SUPPRESSED.value).to_numpy()
        if suppressed.any():
            reasons = pd.DataFrame({"channel": keys["channel"][suppressed],
                                    "reason": _labels(frame["final_code"][suppressed], NONE)})
            self._reasons.append(reasons.groupby(["reason", "channel"], observed=True).size())
        hour = frame["accepted_at"].dt.floor("h")
        self._hourly.append(pd.DataFrame({"channel": keys["channel"], "hour": hour})
                            .groupby(["channel", "hour"], observed=True).size())
        sent = frame["sent_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
        delivered = frame["delivered_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
        first = np.fmin(sent, delivered)
        for channel, rows in keys.groupby("channel", observed=True).indices.items():
            for kind, values in (("sent", sent), ("delivered", delivered), ("first", first)):
                chosen = values[rows]
                self._latency.setdefault((str(channel), kind), []).append(
                    chosen[~np.isnan(chosen)])

    # -- reading out ----------------------------------------------------------------------
    def numbers(self, since: date | None = None, until: date | None = None) -> dict[str, Any]:
        """Everything the report shows, as JSON-ready values (see :data:`DEFINITIONS`)."""
        cube = self._cube()
        overall = _outcome_counts(cube)
        channels = list(CHANNELS) + sorted(set(cube["channel"]) - set(CHANNELS))
        return {
            "schema_version": SCHEMA_VERSION,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "first_event_at": _iso(self.first_at),
            "last_event_at": _iso(self.last_at),
            "rows": self.rows,
            "duplicate_rows": self.duplicate_rows,
            "notifications": overall["notifications"],
            "success_rate": overall["success_rate"],
            "outcomes": {k: v for k, v in overall.items() if k not in ("notifications",
                                                                        "success_rate")},
            "by_channel": {channel: {**_outcome_counts(cube[cube["channel"] == channel]),
                                     "retries": _retries(cube[cube["channel"] == channel])}
                           for channel in channels},
            "by_provider": _breakdown(cube, "provider"),
            "by_type": _breakdown(cube, "type"),
            "volume_per_hour": self._volume(),
            "latency_ms": _percentiles(self._values(None, "first")),
            "latency_by_channel": {
                channel: {"accept_to_sent": _percentiles(self._values(channel, "sent")),
                          "accept_to_delivered": _percentiles(self._values(channel, "delivered")),
                          "accept_to_sent_or_delivered": _percentiles(self._values(channel, "first"))}
                for channel in channels},
            "retries_per_notification": _retries(cube),
            "top_errors": [{"code": code, "count": count} for code, count in
                           sorted(self._errors.items(), key=lambda item: (-item[1], item[0]))[:TOP]],
            "top_requester_services": _top_services(cube),
            "suppressed_by_reason": self._suppressed_by_reason(),
            "definitions": DEFINITIONS,
        }

    def _cube(self) -> pd.DataFrame:
        if not self._outcomes:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in _DIMENSIONS}
                                | {"n": pd.Series(dtype=np.int64)})
        series = pd.concat(self._outcomes)
        frame = series.groupby(level=list(range(len(_DIMENSIONS))), observed=True).sum()
        cube = frame.rename("n").reset_index()
        for name in _DIMENSIONS[:-1]:
            cube[name] = cube[name].astype(str)
        return cube

    def _volume(self) -> dict[str, Any]:
        if not self._hourly:
            return {"hours": [], "by_channel": {}}
        counts = pd.concat(self._hourly).groupby(level=[0, 1], observed=True).sum()
        table = counts.unstack(level=0, fill_value=0)
        hours = pd.date_range(table.index.min(), table.index.max(), freq="h")
        table = table.reindex(hours, fill_value=0)
        ordered = [c for c in CHANNELS if c in table.columns] + sorted(
            str(c) for c in table.columns if c not in CHANNELS)
        return {"hours": [_iso(hour) for hour in hours],
                "by_channel": {str(c): [int(v) for v in table[c]] for c in ordered}}

    def _suppressed_by_reason(self) -> list[dict[str, Any]]:
        """``[{"reason", "count", "by_channel": {channel: count}}]``, the most first."""
        if not self._reasons:
            return []
        counts = pd.concat(self._reasons).groupby(level=[0, 1], observed=True).sum()
        by_reason: dict[str, dict[str, int]] = {}
        for (reason, channel), count in counts.items():
            if count:
                by_reason.setdefault(str(reason), {})[str(channel)] = int(count)
        return [{"reason": reason, "count": sum(channels.values()), "by_channel": channels}
                for reason, channels in sorted(by_reason.items(),
                                               key=lambda item: (-sum(item[1].values()), item[0]))]

    def _values(self, channel: str | None, kind: str) -> np.ndarray:
        parts = [array for (name, what), arrays in self._latency.items()
                 if what == kind and channel in (None, name) for array in arrays]
        return np.concatenate(parts) if parts else np.empty(0)


def _labels(column: pd.Series, missing: str) -> pd.Series:
    """``column`` as a categorical with ``missing`` in place of nulls."""
    labels = column if isinstance(column.dtype, pd.CategoricalDtype) else column.astype("category")
    if missing not in labels.cat.categories:
        labels = labels.cat.add_categories([missing])
    return labels.fillna(missing)


def _outcome_counts(cube: pd.DataFrame) -> dict[str, Any]:
    by_status = cube.groupby("status")["n"].sum()
    counts = {status: int(by_status.get(status, 0)) for status in (*FINAL_STATES, PENDING)}
    final = sum(counts[status] for status in FINAL_STATES if status not in NOT_ATTEMPTED)
    success = sum(counts[status] for status in SUCCESS)
    return {"notifications": int(cube["n"].sum()), **counts,
            "success_rate": success / final if final else None}


def _breakdown(cube: pd.DataFrame, key: str) -> dict[str, dict[str, Any]]:
    """Outcome counts per value of ``key``, the biggest first."""
    totals = cube.groupby(key)["n"].sum().sort_values(ascending=False, kind="stable")
    return {str(name): _outcome_counts(cube[cube[key] == name]) for name in totals.index}


def _retries(cube: pd.DataFrame) -> dict[str, int]:
    by_bucket = cube.groupby("retries")["n"].sum()
    return {label: int(by_bucket.get(bucket, 0)) for bucket, label in enumerate(RETRY_BUCKETS)}


def _top_services(cube: pd.DataFrame) -> list[dict[str, Any]]:
    totals = cube.groupby("service")["n"].sum()
    ranked = sorted(totals.items(), key=lambda item: (-int(item[1]), str(item[0])))[:TOP]
    return [{"service": str(name), "notifications": int(count),
             "success_rate": _outcome_counts(cube[cube["service"] == name])["success_rate"]}
            for name, count in ranked]


def _percentiles(values: np.ndarray) -> dict[str, Any]:
    if values.size == 0:
        return {"count": 0, **{f"p{p}": None for p in PERCENTILES}}
    points = np.percentile(values, PERCENTILES)
    return {"count": int(values.size), **{f"p{p}": float(v) for p, v in zip(PERCENTILES, points,
                                                                           strict=True)}}


def _iso(moment: datetime | pd.Timestamp | None) -> str | None:
    if moment is None:
        return None
    return pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
