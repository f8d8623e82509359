"""The chaos table: one row per scenario and a total, in Markdown (what docs/performance.md quotes)."""

from __future__ import annotations

from collections.abc import Sequence

from tests.chaos.kills import KINDS
from tests.chaos.tally import Tally


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _mib(value: int) -> str:
    return "–" if not value else f"{value / 2**20:,.0f} MiB"


def _kills(kills: dict[str, int]) -> str:
    shown = [f"{kind} {kills[kind]}" for kind in (*KINDS, "whole") if kills.get(kind)]
    return ", ".join(shown) or "–"


def _dups(dups: dict[str, int]) -> str:
    total = sum(dups.values())
    parts = [f"{channel} {n}" for channel, n in dups.items() if n]
    return f"{total}" + (f" ({', '.join(parts)})" if parts else "")


def table(tallies: Sequence[Tally]) -> str:
    """Markdown table; the last row adds everything up."""
    head = ("| scenario | offered | accepted | delivered (final) | lost | duplicates | browser "
            "resends | kills | p99 accept→sent | peak RSS | server errors | s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    total = Tally("total")
    for tally in tallies:
        lines.append(row(tally))
        total.merge(tally)
    total.p99 = max((t.p99 for t in tallies if t.p99 is not None), default=None)
    total.seconds = sum(t.seconds for t in tallies)
    lines.append(row(total, bold=True))
    return "\n".join(lines)


def row(t: Tally, bold: bool = False) -> str:
    cells = [t.name, f"{t.offered:,}", f"{t.accepted:,}", f"{t.delivered:,} ({t.delivered + t.failed:,})",
             str(t.lost), _dups(t.duplicates), str(t.browser_resends), _kills(t.kills),
             _seconds(t.p99), _mib(t.peak_rss), str(t.server_errors), f"{t.seconds:.0f}"]
    if bold:
        cells = [f"**{c}**" for c in cells]
    return "| " + " | ".join(cells) + " |"


def details(tallies: Sequence[Tally]) -> str:
    """Notes, Herald's own counters and every problem, per scenario."""
    out = []
    for t in tallies:
        out.append(f"- {t.name}: answers {t.answers}; herald {t.herald}; "
                   f"out of order (browser) {t.out_of_order}; p50 {_seconds(t.p50)}")
        out += [f"    - {note}" for note in t.notes]
        out += [f"    - PROBLEM: {problem}" for problem in t.problems]
    return "\n".join(out)
