"""A delivery report: scan the rolled-up Parquet, tally it, and write the numbers as JSON or HTML.

``compute`` returns the numbers (a JSON-ready dict, see ``analytics.metrics.DEFINITIONS``);
``render_json`` and ``render_html`` turn them into text. ``herald report`` calls these three.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from analytics import page, plots
from analytics.metrics import Tally
from analytics.progress import Progress, silent
from analytics.scan import Window, by_channel, notifications, plan, read_partition, settle
from herald.analytics_store import AnalyticsStore
from herald.data_dir import EVENTS


class ReportError(Exception):
    """The Parquet could not be read (a damaged file, a directory Herald may not open)."""


def compute(data_dir: Path, since: date | None = None, until: date | None = None,
            progress: Progress | None = None, *, analytics_uri: str | None = None
            ) -> dict[str, Any]:
    """The numbers of the notifications accepted from ``since`` to ``until`` (UTC days, both
    included; None: from the first or to the last day there is), read from ``analytics_uri``
    (``HERALD_ANALYTICS_URI``) or, without it, ``data_dir/analytics``."""
    if since is not None and until is not None and since > until:
        raise ValueError(f"since ({since}) is after until ({until})")
    where = analytics_uri or data_dir
    try:
        store = AnalyticsStore.locate(data_dir, analytics_uri)
        where = f"{store.name}/{EVENTS}"
        return _compute(store, where, Window(since, until), progress or silent())
    except (OSError, pa.ArrowException) as exc:
        raise ReportError(f"cannot read the delivery log under {where}: {exc}") from exc


def _compute(store: AnalyticsStore, where: str, window: Window,
             progress: Progress) -> dict[str, Any]:
    dataset, partitions = plan(store, window)
    groups = list(by_channel(partitions))
    progress.expect(len(partitions) + len(groups))
    tally = Tally()
    for channel, group in groups:
        states = []
        for partition in group:
            with progress.step(f"reading {channel} {partition.day}"):
                result = read_partition(dataset, partition, window)
            tally.add_rows(result.rows, result.duplicates, result.first_at, result.last_at)
            tally.add_errors(result.errors)
            states.append(result.state)
            # The partition's rows are gone: give their pages back, so the peak is one
            # partition's worth, not the allocator's high-water mark of all of them.
            pa.default_memory_pool().release_unused()
        with progress.step(f"counting {channel}"):
            for piece in settle(states):
                tally.add_notifications(notifications(piece, channel))
        del states
    numbers = tally.numbers(window.since, window.until)
    numbers["data_dir"] = where
    numbers["generated_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return numbers


def render_json(numbers: dict[str, Any]) -> str:
    return json.dumps(numbers, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def render_html(numbers: dict[str, Any], progress: Progress | None = None) -> str:
    """One self-contained page: charts as ``data:`` PNGs, CSS inline, no script, no network."""
    progress = progress or silent()
    charts = page.Charts()
    if numbers["notifications"] or numbers["rows"]:
        for name, draw in _drawings(numbers).items():
            with progress.step(f"drawing {name}"):
                charts.add(name, draw())
    return page.html(numbers, charts)


def build(data_dir: Path, since: date | None, until: date | None, html: bool,
          progress: Progress | None = None, *,
          analytics_uri: str | None = None) -> tuple[dict[str, Any], str]:
    """The numbers and the report's text (HTML or JSON), with one progress bar for both."""
    progress = progress or silent()
    if html:
        progress.expect(len(CHARTS))
    numbers = compute(data_dir, since, until, progress, analytics_uri=analytics_uri)
    return numbers, render_html(numbers, progress) if html else render_json(numbers)


#: The charts of the HTML page, in page order.
CHARTS = ("volume", "channel", "provider", "type", "latency", "retries", "errors", "services")


def _drawings(numbers: dict[str, Any]) -> dict[str, Callable[[], bytes | None]]:
    drawings: dict[str, Callable[[], bytes | None]] = {
        "volume": lambda: plots.volume_per_hour(numbers),
        "channel": lambda: plots.success_rates(numbers["by_channel"]),
        "provider": lambda: plots.success_rates(numbers["by_provider"]),
        "type": lambda: plots.success_rates(numbers["by_type"]),
        "latency": lambda: plots.latency(numbers),
        "retries": lambda: plots.retries(numbers),
        "errors": lambda: plots.ranking(
            [(e["code"], e["count"]) for e in numbers["top_errors"]], plots.POOR),
        "services": lambda: plots.ranking(
            [(s["service"], s["notifications"]) for s in numbers["top_requester_services"]],
            plots.CHANNEL_COLOURS["email"]),
    }
    assert tuple(drawings) == CHARTS
    return drawings
