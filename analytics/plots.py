"""The report's charts: matplotlib figures drawn off-screen (Agg) from the numbers, as PNG bytes.

Each function takes the numbers ``analytics.metrics.Tally.numbers`` returned (so a chart and
the table under it cannot disagree) and returns a PNG, or None when there is nothing to draw.
``matplotlib.figure.Figure`` is used directly, never ``pyplot``: no global state, no GUI
backend, nothing to close. Labels from the data are drawn as plain text (``$`` is not maths).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

#: Colours that stay apart for the colour-blind (Tableau 10), one per channel everywhere.
CHANNEL_COLOURS = {"email": "#4E79A7", "sms": "#59A14F", "fax": "#F28E2B", "browser": "#B07AA1"}
_OTHER = ["#76B7B2", "#EDC948", "#FF9DA7", "#9C755F", "#BAB0AC"]
PERCENTILE_COLOURS = {"p50": "#A0CBE8", "p95": "#4E79A7", "p99": "#1F3A5F"}
GOOD, FAIR, POOR = "#59A14F", "#EDC948", "#E15759"
INK, MUTED, GRID = "#1F2933", "#616E7C", "#E4E7EB"
WIDTH, DPI = 9.0, 110
MAX_LABEL = 36
_UNITS = (("ms", 1.0), ("s", 1000.0), ("min", 60_000.0), ("h", 3_600_000.0))
_STYLE: dict[str, Any] = {
    "text.parse_math": False, "font.size": 10, "font.family": "DejaVu Sans",
    "axes.edgecolor": GRID, "axes.labelcolor": MUTED, "axes.titlesize": 11,
    "axes.titleweight": "bold", "axes.titlecolor": INK, "axes.titlelocation": "left",
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": GRID, "grid.linewidth": 0.8, "xtick.color": MUTED, "ytick.color": MUTED,
    "legend.frameon": False, "axes.axisbelow": True,
}


def colour(channel: str, index: int = 0) -> str:
    return CHANNEL_COLOURS.get(channel, _OTHER[index % len(_OTHER)])


def volume_per_hour(numbers: Mapping[str, Any]) -> bytes | None:
    """Notifications accepted per hour, stacked by channel."""
    volume = numbers["volume_per_hour"]
    if not volume["hours"]:
        return None
    hours = date2num([datetime.fromisoformat(h.replace("Z", "+00:00")) for h in volume["hours"]])
    channels = list(volume["by_channel"])
    with _figure(3.4) as (fig, ax):
        series = [np.asarray(volume["by_channel"][c]) for c in channels]
        colours = [colour(c, i) for i, c in enumerate(channels)]
        if len(hours) <= 72:  # few enough for bars an hour wide
            bottom = np.zeros(len(hours))
            for name, values, shade in zip(channels, series, colours, strict=True):
                ax.bar(hours, values, width=1 / 24 * 0.85, bottom=bottom, label=name,
                       color=shade, align="edge")
                bottom += values
        else:
            ax.stackplot(hours, *series, labels=channels, colors=colours, linewidth=0)
        ax.xaxis_date("UTC")
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.yaxis.set_major_formatter(_thousands())
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="x", visible=False)
        ax.set_ylabel("notifications / hour (UTC)")
        ax.legend(ncols=len(channels), loc="upper left", bbox_to_anchor=(0, 1.12))
        return _png(fig)


def success_rates(breakdown: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """Success rate per channel, provider or type (the keys of ``breakdown``), as bars."""
    rows = [(name, entry) for name, entry in breakdown.items() if entry["success_rate"] is not None]
    if not rows:
        return None
    rows = rows[:15]
    names = [_clip(name) for name, _ in rows]
    rates = np.array([entry["success_rate"] for _, entry in rows])
    with _figure(0.9 + 0.36 * len(rows)) as (fig, ax):
        shades = [GOOD if r >= 0.95 else FAIR if r >= 0.8 else POOR for r in rates]
        positions = np.arange(len(rows))[::-1]
        ax.barh(positions, np.ones(len(rows)), color=GRID, height=0.62)
        ax.barh(positions, rates, color=shades, height=0.62)
        for y, rate, (_, entry) in zip(positions, rates, rows, strict=True):
            final = sum(entry.get(s, 0) for s in ("sent", "delivered", "failed", "dead",
                                                   "cancelled", "suppressed", "bounced"))
            ax.text(1.01, y, f"{rate:.1%} of {final:,}", va="center", color=INK, fontsize=9)
        ax.set_yticks(positions, names)
        ax.set_xlim(0, 1.2)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.grid(axis="y", visible=False)
        return _png(fig)


def latency(numbers: Mapping[str, Any]) -> bytes | None:
    """Accept → sent or delivered p50/p95/p99 per channel, as grouped bars."""
    per_channel = {c: v["accept_to_sent_or_delivered"] for c, v in numbers["latency_by_channel"].items()
                   if v["accept_to_sent_or_delivered"]["count"]}
    if not per_channel:
        return None
    channels = list(per_channel)
    top = max(per_channel[c]["p99"] for c in channels)
    unit, factor = next((u, f) for u, f in reversed(_UNITS) if top >= 2 * f or f == 1)
    with _figure(3.2) as (fig, ax):
        x = np.arange(len(channels))
        width = 0.26
        for i, (key, shade) in enumerate(PERCENTILE_COLOURS.items()):
            values = [per_channel[c][key] for c in channels]
            bars = ax.bar(x + (i - 1) * width, np.array(values) / factor, width, label=key,
                          color=shade)
            ax.bar_label(bars, labels=[duration(v) for v in values], fontsize=8, color=MUTED,
                         padding=2)
        ax.set_xticks(x, channels)
        ax.grid(axis="x", visible=False)
        ax.set_ylabel(f"accept → sent or delivered ({unit})")
        ax.margins(y=0.15)
        ax.legend(ncols=3, loc="upper left", bbox_to_anchor=(0, 1.12))
        return _png(fig)


def retries(numbers: Mapping[str, Any]) -> bytes | None:
    """How many retries notifications needed, stacked by channel."""
    by_channel = {c: entry["retries"] for c, entry in numbers["by_channel"].items()
                  if entry["notifications"]}
    if not by_channel:
        return None
    buckets = list(numbers["retries_per_notification"])
    with _figure(3.0) as (fig, ax):
        bottom = np.zeros(len(buckets))
        for i, (name, counts) in enumerate(by_channel.items()):
            values = np.array([counts[b] for b in buckets], dtype=float)
            ax.bar(buckets, values, bottom=bottom, label=name, color=colour(name, i), width=0.6)
            bottom += values
        for x, total in enumerate(bottom):
            ax.text(x, total, f"{int(total):,}", ha="center", va="bottom", fontsize=9, color=INK)
        ax.set_xlabel("retries per notification")
        ax.yaxis.set_major_formatter(_thousands())
        ax.grid(axis="x", visible=False)
        ax.margins(y=0.15)
        ax.legend(ncols=len(by_channel), loc="upper right")
        return _png(fig)


def ranking(items: Sequence[tuple[str, int]], shade: str) -> bytes | None:
    """A top-N list (error codes, requester services) as horizontal bars, biggest on top."""
    if not items:
        return None
    with _figure(0.9 + 0.34 * len(items)) as (fig, ax):
        positions = np.arange(len(items))[::-1]
        counts = [count for _, count in items]
        bars = ax.barh(positions, counts, color=shade, height=0.62)
        ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=9, color=INK, padding=3)
        ax.set_yticks(positions, [_clip(name) for name, _ in items])
        ax.xaxis.set_major_formatter(_thousands())
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.12)
        return _png(fig)


@contextmanager
def _figure(height: float) -> Iterator[tuple[Figure, Axes]]:
    with mpl.rc_context(cast(Any, _STYLE)), warnings.catch_warnings():
        # A label in a script DejaVu lacks draws as boxes; a warning would say nothing more.
        warnings.filterwarnings("ignore", message="Glyph .* missing", category=UserWarning)
        fig = Figure(figsize=(WIDTH, height), layout="constrained")
        yield fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _clip(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _thousands() -> FuncFormatter:
    return FuncFormatter(lambda value, _: f"{value:,.0f}")


def duration(ms: float) -> str:
    """``850 ms``, ``12.4 s``, ``3.2 min``, ``1.5 h``: a latency as people say it."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"
