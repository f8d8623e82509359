"""The report as one HTML page: headline numbers, then each chart with its numbers as a table.

Self-contained: the CSS is inline, charts are ``data:image/png;base64`` URIs, there is no
script and nothing to fetch. Every value that comes from the data (names, codes, services) goes
through :func:`html.escape`, so a requester service called ``<script>`` is just text.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from analytics.metrics import DEFINITIONS, FINAL_STATES, PENDING
from analytics.plots import duration

#: Tables longer than this start folded (``<details>``, no script needed).
FOLD_ROWS = 30

CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --soft:#f5f7fa; --good:#2f855a;
        --fair:#b7791f; --poor:#c53030; --accent:#4e79a7; }
* { box-sizing: border-box; }
body { margin:0; background:var(--soft); color:var(--ink);
       font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width:1040px; margin:0 auto; padding:32px 24px 48px; }
header h1 { margin:0; font-size:26px; letter-spacing:-0.01em; }
header p { margin:4px 0 0; color:var(--muted); font-size:13px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:12px;
         margin:24px 0 8px; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:14px 16px; }
.card .value { font-size:28px; font-weight:700; line-height:1.15; white-space:nowrap;
               font-variant-numeric:tabular-nums; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.05em; }
.card .hint { color:var(--muted); font-size:12px; margin-top:2px; }
.good { color:var(--good); } .fair { color:var(--fair); } .poor { color:var(--poor); }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:18px 20px;
          margin-top:16px; }
section h2 { margin:0 0 2px; font-size:18px; }
section .about { margin:0 0 10px; color:var(--muted); font-size:13px; }
figure { margin:8px 0 12px; }
figure img { display:block; width:100%; height:auto; }
.empty { color:var(--muted); font-style:italic; }
.notice { background:#fffbea; border:1px solid #f0e0a0; border-radius:10px; padding:14px 18px;
          margin-top:16px; }
table { border-collapse:collapse; width:100%; font-size:13px; font-variant-numeric:tabular-nums; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:right;
         white-space:nowrap; }
th.t, td.t { text-align:left; white-space:normal; overflow-wrap:anywhere; min-width:7em; }
thead th { color:var(--muted); font-weight:600; border-bottom:2px solid var(--line); }
tbody tr:nth-child(even) { background:var(--soft); }
details summary { cursor:pointer; color:var(--accent); font-size:13px; margin:4px 0; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; font-size:13px; }
dt { font-weight:600; } dd { margin:0; color:var(--muted); }
footer { color:var(--muted); font-size:12px; margin-top:20px; }
"""


class Charts(dict[str, bytes | None]):
    """The PNG of each chart by name (None: nothing to draw)."""

    def add(self, name: str, png: bytes | None) -> None:
        self[name] = png

    def img(self, name: str, alt: str) -> str:
        png = self.get(name)
        if not png:
            return '<p class="empty">Nothing to draw.</p>'
        data = base64.b64encode(png).decode("ascii")
        return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(alt)}"></figure>'


def html(numbers: Mapping[str, Any], charts: Charts) -> str:
    since, until = numbers["since"], numbers["until"]
    window = (f"{since or 'the first day'} – {until or 'the last day'}" if since or until
              else "all days")
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Herald delivery report · {escape(window)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        _header(numbers, window), _cards(numbers),
    ]
    if not numbers["notifications"] and not numbers["rows"]:
        parts.append(f'<div class="notice"><strong>No delivery events</strong> in '
                     f"{escape(str(numbers.get('data_dir', '')))} for {escape(window)}. "
                     "Has <code>herald rollup</code> run since notifications were sent?</div>")
    else:
        parts += _sections(numbers, charts)
    parts += [_definitions(), "</main></body></html>"]
    return "\n".join(parts)


def _header(numbers: Mapping[str, Any], window: str) -> str:
    seen = ""
    if numbers["first_event_at"]:
        seen = (f" · events from {escape(numbers['first_event_at'])} to "
                f"{escape(numbers['last_event_at'])}")
    duplicates = numbers["duplicate_rows"]
    note = f" ({duplicates:,} duplicate rows counted once)" if duplicates else ""
    return (f"<header><h1>Herald delivery report</h1><p>{escape(window)} (UTC){seen} · "
            f"{numbers['rows']:,} log rows{note} · generated {escape(numbers['generated_at'])}"
            "</p></header>")


def _cards(numbers: Mapping[str, Any]) -> str:
    outcomes, latency = numbers["outcomes"], numbers["latency_ms"]
    rate = numbers["success_rate"]
    lost = outcomes["failed"] + outcomes["dead"]
    cards = [
        ("Notifications", f"{numbers['notifications']:,}", "", "accepted in the window"),
        ("Success rate", _percent(rate), _grade(rate),
         f"{outcomes['sent'] + outcomes['delivered']:,} sent or delivered"),
        ("Latency p50", _ms(latency["p50"]), "", "accept → sent or delivered"),
        ("Latency p95", _ms(latency["p95"]), "", f"p99 {_ms(latency['p99'])}"),
        ("Failed or dead", f"{lost:,}", "poor" if lost else "", f"{outcomes['cancelled']:,} cancelled"),
        ("Pending", f"{outcomes[PENDING]:,}", "", "no final state yet"),
        ("Suppressed", f"{outcomes['suppressed']:,}", "", _top_reason(numbers)),
        ("Bounced", f"{outcomes['bounced']:,}", "poor" if outcomes["bounced"] else "",
         "sent, then came back"),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="label">{label}</div>'
        f'<div class="value {grade}">{escape(value)}</div><div class="hint">{escape(hint)}</div></div>'
        for label, value, grade, hint in cards) + "</div>"


def _sections(numbers: Mapping[str, Any], charts: Charts) -> list[str]:
    volume = numbers["volume_per_hour"]
    channels = list(volume["by_channel"])
    volume_rows = [[hour, *(volume["by_channel"][c][i] for c in channels),
                    sum(volume["by_channel"][c][i] for c in channels)]
                   for i, hour in enumerate(volume["hours"])]
    measures = {"accept_to_sent": "sent", "accept_to_delivered": "delivered",
                "accept_to_sent_or_delivered": "sent or delivered"}
    latency_rows = [[channel, label, *(_ms(kinds[kind][p]) for p in ("p50", "p95", "p99")),
                     kinds[kind]["count"]]
                    for channel, kinds in numbers["latency_by_channel"].items()
                    for kind, label in measures.items() if kinds[kind]["count"]]
    retry_buckets = list(numbers["retries_per_notification"])
    retry_rows = [[channel, *(entry["retries"][b] for b in retry_buckets), entry["notifications"]]
                  for channel, entry in numbers["by_channel"].items()]
    retry_rows.append(["all", *numbers["retries_per_notification"].values(), numbers["notifications"]])
    return [
        _section("Volume per hour", "Notifications accepted per UTC hour, by channel.",
                 charts.img("volume", "notifications per hour by channel"),
                 _table(["hour (UTC)", *channels, "total"], volume_rows)),
        _section("Success rate by channel", "(sent + delivered) ÷ notifications with a final "
                 "state; each notification counted once, by its last final state.",
                 charts.img("channel", "success rate by channel"),
                 _outcome_table("channel", numbers["by_channel"])),
        _section("Success rate by provider", "The provider of each notification's last final state.",
                 charts.img("provider", "success rate by provider"),
                 _outcome_table("provider", numbers["by_provider"])),
        _section("Success rate by type", "", charts.img("type", "success rate by type"),
                 _outcome_table("type", numbers["by_type"])),
        _section("Latency", "From acceptance to the first final state of sent or delivered "
                 "(browser acks and receipts are 'delivered'). Exact percentiles.",
                 charts.img("latency", "latency percentiles by channel"),
                 _table(["channel", "accept →", "p50", "p95", "p99", "notifications"],
                        latency_rows, text_columns=2)),
        _section("Retries per notification", "Attempts that ended in a retry, per notification.",
                 charts.img("retries", "retries per notification"),
                 _table(["channel", *retry_buckets, "notifications"], retry_rows)),
        _section("Top error codes", "Error codes of failed or retried attempts.",
                 charts.img("errors", "top error codes"),
                 _table(["code", "attempts"], [[e["code"], e["count"]] for e in numbers["top_errors"]])),
        _section("Top requester services", "Notifications by the service that asked for them.",
                 charts.img("services", "top requester services"),
                 _table(["service", "notifications", "success rate"],
                        [[s["service"], s["notifications"], _percent(s["success_rate"])]
                         for s in numbers["top_requester_services"]])),
        _suppressed(numbers),
    ]


def _suppressed(numbers: Mapping[str, Any]) -> str:
    """Suppressed notifications by reason, then the bounced ones, by channel: no chart."""
    reasons = numbers.get("suppressed_by_reason", [])
    by_channel = numbers["by_channel"]
    rows = [(f"suppressed: {entry['reason']}", entry["by_channel"], entry["count"])
            for entry in reasons]
    bounced = {c: entry["bounced"] for c, entry in by_channel.items() if entry["bounced"]}
    if bounced:
        rows.append(("bounced", bounced, sum(bounced.values())))
    channels = [c for c in by_channel if any(counts.get(c) for _, counts, _ in rows)]
    return _section(
        "Suppressed and bounced", "Suppressed: never sent, by the reason of their final state "
        "(preference, manual, bounced, complained, stop). Bounced: sent, then a delivery status "
        "notification said it failed for good.", "",
        _table(["state", *channels, "total"],
               [[name, *(counts.get(c, 0) for c in channels), total] for name, counts, total in rows]))


def _top_reason(numbers: Mapping[str, Any]) -> str:
    reasons = numbers.get("suppressed_by_reason", [])
    return f"most: {reasons[0]['reason']} ({reasons[0]['count']:,})" if reasons else "never sent"


def _section(title: str, about: str, chart: str, table: str) -> str:
    text = f'<p class="about">{escape(about)}</p>' if about else ""
    return f"<section><h2>{escape(title)}</h2>{text}{chart}{table}</section>"


def _outcome_table(what: str, breakdown: Mapping[str, Mapping[str, Any]]) -> str:
    columns = ["notifications", *FINAL_STATES, PENDING]
    rows = [[name, *(entry[c] for c in columns), _percent(entry["success_rate"])]
            for name, entry in breakdown.items()]
    return _table([what, *columns, "success rate"], rows)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], text_columns: int = 1) -> str:
    """A table; its first ``text_columns`` columns are names (left-aligned), the rest numbers."""
    if not rows:
        return '<p class="empty">None in this window.</p>'

    def kind(i: int) -> str:
        return ' class="t"' if i < text_columns else ""

    head = "".join(f"<th{kind(i)}>{escape(str(h))}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{kind(i)}>{_cell(v)}</td>" for i, v in enumerate(row))
                   + "</tr>" for row in rows)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if len(rows) > FOLD_ROWS:
        return f"<details><summary>Show the {len(rows):,} rows as a table</summary>{table}</details>"
    return table


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    return escape(str(value))


def _definitions() -> str:
    items: Iterable[str] = (f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in DEFINITIONS.items())
    return f"<footer><h3>What the numbers mean</h3><dl>{''.join(items)}</dl></footer>"


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else duration(value)


def _grade(rate: float | None) -> str:
    if rate is None:
        return ""
    return "good" if rate >= 0.95 else "fair" if rate >= 0.8 else "poor"
