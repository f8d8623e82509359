"""`herald report` on generated Parquet whose truth is known: the numbers must equal it exactly.

``generate`` plays notifications through known scenarios (retries, dead letters revived by
``herald retry``, receipts turning sent into delivered or failed, receipts tied on ``at``,
notifications spanning midnight, duplicated rows) and ``write_log`` lays the rows out as the
rollup does. ``expected`` is a plain-Python oracle over the same rows, checked itself against the
scenario counts.
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics.report import compute, render_html
from herald.log_schema import SCHEMA
from launcher.cli import main

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>"
SERVICES = ["billing", "auth", "marketing", None, HOSTILE, "$ledger_{x"]
PROVIDERS = {"email": "smtp", "sms": "twilio", "fax": "telnyx", "browser": "websocket"}
SCENARIOS = {
    "email": ["sent", "sent", "failed", "dead", "cancelled", "pending", "revived", "suppressed",
              "bounced"],
    "sms": ["sent", "receipt_delivered", "receipt_failed", "tie", "dead", "failed", "suppressed"],
    "fax": ["sent", "receipt_delivered", "dead", "cancelled", "revived"],
    "browser": ["delivered", "delivered", "dead", "pending", "cancelled"],
}
#: Why a suppressed notification was never sent (its final event's error code); None: not said.
REASONS = {"email": ["preference", "manual", "bounced", "complained", None],
           "sms": ["preference", "stop", "stop", "manual"]}
STATES = ("sent", "delivered", "failed", "dead", "cancelled", "suppressed", "bounced", "pending")


@dataclass
class Log:
    rows: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    scenarios: Counter[str] = field(default_factory=Counter)
    _ids: Counter[int] = field(default_factory=Counter)

    def add(self, n: dict[str, Any], event: str, status: str, at: datetime, *, attempt: int = 0,
            provider: str | None = None, code: str | None = None, event_id: int | None = None) -> None:
        self._ids[n["shard"]] += 1
        self.rows.append({
            "shard": n["shard"], "event_id": event_id or self._ids[n["shard"]], "tag": n["tag"],
            "tenant": "acme", "type": n["type"], "channel": n["channel"], "event": event,
            "status": status, "provider": provider, "attempt": attempt, "error_code": code,
            "requester_service": n["service"], "priority": 1, "at": at,
            "latency_ms": (at - n["accepted"]).total_seconds() * 1000,
        })


def generate(count: int = 480, seed: int = 7) -> Log:
    """``count`` notifications over three days (one spanning midnight), ~4 % rows doubled."""
    rng, log = random.Random(seed), Log()
    for i in range(count):
        channel = ("email", "sms", "fax", "browser")[i % 4]
        accepted = DAY0 + timedelta(days=i % 3, seconds=rng.uniform(0, 86_000))
        if i == 5:  # accepted just before midnight, its receipt comes the next day
            accepted = DAY0 + timedelta(seconds=86_395)
        n = {"tag": f"{i:04d}-{rng.getrandbits(48):012x}", "shard": i % 3, "channel": channel,
             "type": f"{rng.choice(['CM', 'OTP'])}_{channel.upper()}",
             "service": rng.choice(SERVICES), "accepted": accepted}
        scenario = "receipt_delivered" if i == 5 else rng.choice(SCENARIOS[channel])
        log.scenarios[scenario] += 1
        _play(log, n, scenario, rng)
    for row in rng.sample(log.rows, len(log.rows) // 25):
        log.duplicates.append(dict(row))
    return log


def _play(log: Log, n: dict[str, Any], scenario: str, rng: random.Random) -> None:
    provider, at, attempt = PROVIDERS[n["channel"]], n["accepted"], 0
    log.add(n, "accepted", "queued", at)

    def step(low: float = 0.05, high: float = 40.0) -> datetime:
        nonlocal at
        at += timedelta(seconds=rng.uniform(low, high))
        return at

    def attempt_row(status: str, code: str | None = None) -> None:
        nonlocal attempt
        attempt += 1
        log.add(n, "attempt", status, step(), attempt=attempt, provider=provider, code=code)

    def final(status: str, code: str | None = None, who: str | None = provider) -> None:
        log.add(n, "final", status, step(), attempt=attempt, provider=who, code=code)

    retries = rng.choice([0, 0, 0, 1, 2, 4]) if scenario in ("sent", "delivered") else 0
    for _ in range(retries):
        attempt_row("retry", rng.choice(["421", "timeout"]))
    if scenario in ("dead", "revived"):
        for _ in range(3):
            attempt_row("retry", rng.choice(["421", "timeout", "503"]))
        final("dead", "503")
    if scenario in ("sent", "revived", "receipt_delivered", "receipt_failed", "tie"):
        attempt_row("sent")
        final("sent")
    if scenario == "delivered":
        attempt_row("delivered")
        final("delivered")
    if scenario == "receipt_delivered":
        log.add(n, "final", "delivered", step(300, 900), attempt=attempt, provider=provider)
    if scenario == "receipt_failed":
        log.add(n, "final", "failed", step(60, 600), attempt=attempt, provider=provider, code="30003")
    if scenario == "tie":  # the receipt has the same ``at`` as the sent: the higher event id wins
        log.add(n, "final", "delivered", at, attempt=attempt, provider=provider)
    if scenario == "failed":
        attempt_row("failed", "550")
        final("failed", "550")
    if scenario == "cancelled":
        final("cancelled", who=None)
    if scenario == "suppressed":
        final("suppressed", rng.choice(REASONS[n["channel"]]), who=None)
    if scenario == "bounced":
        attempt_row("sent")
        final("sent")
        log.add(n, "final", "bounced", step(60, 600), attempt=attempt, provider=provider, code="5.1.1")
    if scenario == "pending" and rng.random() < 0.5:
        attempt_row("retry", "timeout")


def write_log(log: Log, data_dir: Path) -> Path:
    """Hive layout as the rollup writes it (partition columns in the path only); duplicates in a
    second file of the same partition, that one with the channel column kept in the file."""
    root = data_dir / "analytics" / "events"
    for name, rows in (("part-0", log.rows), ("part-1", log.duplicates)):
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault((row["at"].date().isoformat(), row["channel"]), []).append(row)
        for (day, channel), group in groups.items():
            folder = root / f"dt={day}" / f"channel={channel}"
            folder.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(group, schema=SCHEMA)
            if name == "part-0":
                table = table.drop_columns(["channel"])
            pq.write_table(table, folder / f"{name}.parquet")
    return root


def expected(rows: list[dict[str, Any]], since: date | None = None,
             until: date | None = None) -> dict[str, Any]:
    """The oracle: the report's definitions applied row by row."""
    seen: set[tuple[int, int]] = set()
    kept = []
    for row in rows:
        key = (row["shard"], row["event_id"])
        day = row["at"].date()
        if key not in seen and not (since and day < since) and not (until and day > until):
            seen.add(key)
            kept.append(row)
    accepted = {r["tag"]: r for r in kept if r["event"] == "accepted"}
    last: dict[str, dict[str, Any]] = {}
    retries: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    first_ms: dict[tuple[str, str], float] = {}
    for r in kept:
        if r["event"] == "attempt" and r["error_code"]:
            errors[r["error_code"]] += 1
        if r["tag"] not in accepted:
            continue
        if r["event"] == "attempt" and r["status"] == "retry":
            retries[r["tag"]] += 1
        if r["event"] == "final":
            if r["tag"] not in last or (r["at"], r["event_id"]) > (last[r["tag"]]["at"],
                                                                  last[r["tag"]]["event_id"]):
                last[r["tag"]] = r
            if r["status"] in ("sent", "delivered"):
                key2 = (r["tag"], r["status"])
                first_ms[key2] = min(first_ms.get(key2, math.inf), r["latency_ms"])
    by: dict[str, dict[str, Counter[str]]] = {"channel": {}, "provider": {}, "type": {},
                                              "service": {}}
    buckets: dict[str, Counter[str]] = {}
    latencies: dict[str, dict[str, list[float]]] = {}
    hourly: Counter[tuple[str, str]] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for tag, acc in accepted.items():
        final = last.get(tag)
        state = final["status"] if final else "pending"
        if state == "suppressed":
            reason = (final or {}).get("error_code") or "(none)"
            reasons.setdefault(reason, Counter())[acc["channel"]] += 1
        labels = {"channel": acc["channel"], "type": acc["type"],
                  "provider": (final or {}).get("provider") or "(none)",
                  "service": acc["requester_service"] or "(none)"}
        for dimension, value in labels.items():
            by[dimension].setdefault(value, Counter())[state] += 1
        bucket = str(min(retries[tag], 3)).replace("3", "3+")
        buckets.setdefault(acc["channel"], Counter())[bucket] += 1
        lat = latencies.setdefault(acc["channel"], {"sent": [], "delivered": [], "first": []})
        values = {k: first_ms[(tag, k)] for k in ("sent", "delivered") if (tag, k) in first_ms}
        for kind, value in values.items():
            lat[kind].append(value)
        if values:
            lat["first"].append(min(values.values()))
        hourly[(acc["channel"], acc["at"].strftime("%Y-%m-%dT%H:00:00Z"))] += 1
    return {"by": by, "retries": buckets, "latency": latencies, "errors": errors,
            "hourly": hourly, "notifications": len(accepted), "rows": len(kept),
            "reasons": reasons}


def outcome(counts: Counter[str]) -> dict[str, Any]:
    final = sum(counts[s] for s in STATES[:-1] if s != "suppressed")  # never attempted
    return {"notifications": sum(counts.values()), **{s: counts[s] for s in STATES},
            "success_rate": (counts["sent"] + counts["delivered"]) / final if final else None}


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(np.array(values), [50, 95, 99])
    return {"count": len(values), "p50": p50, "p95": p95, "p99": p99}


def assert_numbers_match(numbers: dict[str, Any], truth: dict[str, Any]) -> None:
    assert numbers["notifications"] == truth["notifications"]
    assert numbers["rows"] == truth["rows"]
    for channel in ("email", "sms", "fax", "browser"):
        entry = dict(numbers["by_channel"][channel])
        retries = entry.pop("retries")
        assert entry == outcome(truth["by"]["channel"].get(channel, Counter())), channel
        assert retries == {b: truth["retries"].get(channel, Counter())[b]
                           for b in ("0", "1", "2", "3+")}
        lat = truth["latency"].get(channel, {"sent": [], "delivered": [], "first": []})
        assert numbers["latency_by_channel"][channel] == {
            "accept_to_sent": percentiles(lat["sent"]),
            "accept_to_delivered": percentiles(lat["delivered"]),
            "accept_to_sent_or_delivered": percentiles(lat["first"])}
    for dimension in ("provider", "type"):
        assert numbers[f"by_{dimension}"] == {k: outcome(v) for k, v in
                                              truth["by"][dimension].items()}
    everything = [v for lat in truth["latency"].values() for v in lat["first"]]
    assert numbers["latency_ms"] == percentiles(everything)
    assert numbers["top_errors"] == [{"code": c, "count": n} for c, n in
                                     sorted(truth["errors"].items(), key=lambda i: (-i[1], i[0]))]
    services = sorted(truth["by"]["service"].items(), key=lambda i: (-sum(i[1].values()), i[0]))
    assert numbers["top_requester_services"] == [
        {"service": s, "notifications": sum(c.values()), "success_rate": outcome(c)["success_rate"]}
        for s, c in services]
    assert numbers["suppressed_by_reason"] == [
        {"reason": reason, "count": sum(channels.values()), "by_channel": dict(channels)}
        for reason, channels in sorted(truth["reasons"].items(),
                                       key=lambda i: (-sum(i[1].values()), i[0]))]
    volume = numbers["volume_per_hour"]
    got = Counter({(ch, hour): n for ch, counts in volume["by_channel"].items()
                   for hour, n in zip(volume["hours"], counts, strict=True) if n})
    assert got == truth["hourly"]


@pytest.fixture(scope="module")
def log() -> Log:
    return generate()


@pytest.fixture(scope="module")
def data_dir(log: Log, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("herald-data")
    write_log(log, data)
    return data


def test_the_oracle_agrees_with_the_scenarios_played(log: Log) -> None:
    truth, plays = expected(log.rows), log.scenarios
    states = Counter()
    for counts in truth["by"]["channel"].values():
        states.update(counts)
    assert states["dead"] == plays["dead"]
    assert states["delivered"] == plays["delivered"] + plays["receipt_delivered"] + plays["tie"]
    assert states["sent"] == plays["sent"] + plays["revived"]
    assert states["failed"] == plays["failed"] + plays["receipt_failed"]
    assert states["cancelled"] == plays["cancelled"] and states["pending"] == plays["pending"]
    assert states["suppressed"] == plays["suppressed"] == sum(
        sum(channels.values()) for channels in truth["reasons"].values())
    assert states["bounced"] == plays["bounced"]
    assert {"stop", "preference", "bounced", "(none)"} <= set(truth["reasons"])
    assert plays["tie"] and plays["revived"] and log.duplicates


def test_numbers_equal_the_generated_truth(log: Log, data_dir: Path) -> None:
    numbers = compute(data_dir)
    assert_numbers_match(numbers, expected(log.rows))
    assert numbers["duplicate_rows"] == len(log.duplicates)
    assert (numbers["since"], numbers["until"]) == (None, None)
    assert numbers["first_event_at"] == min(r["at"] for r in log.rows).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_window_counts_notifications_accepted_in_it_and_prunes_other_days(
        log: Log, data_dir: Path, tmp_path: Path) -> None:
    day1, day2 = (DAY0 + timedelta(days=1)).date(), (DAY0 + timedelta(days=2)).date()
    numbers = compute(data_dir, since=day1, until=day1)
    assert_numbers_match(numbers, expected(log.rows, day1, day1))
    assert (numbers["since"], numbers["until"]) == (day1.isoformat(), day1.isoformat())
    # Partition pruning: a damaged file on a day outside the window is never opened.
    copy = tmp_path / "data"
    write_log(log, copy)
    (copy / "analytics" / "events" / f"dt={DAY0.date()}" / "channel=sms" / "part-0.parquet"
     ).write_bytes(b"not parquet")
    assert_numbers_match(compute(copy, since=day1, until=day2), expected(log.rows, day1, day2))


def test_json_from_the_command_line(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], log: Log) -> None:
    monkeypatch.setenv("HERALD_DATA_DIR", str(data_dir / "elsewhere"))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a person at a terminal
    assert main(["report", "--format", "json", "--data-dir", str(data_dir)]) == 0
    out, err = capsys.readouterr()
    numbers = json.loads(out)
    assert_numbers_match(numbers, expected(log.rows))
    assert "100% done" in err and "\r[" in err  # the progress bar, on stderr only
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # a log file: no bar
    assert main(["report", "--format", "json", "--data-dir", str(data_dir)]) == 0
    assert "\r[" not in capsys.readouterr().err


def test_the_command_refuses_a_backwards_window(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--since", "2026-03-05", "--until", "2026-03-01"]) == 2
    assert "is after" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--since", "yesterday"])
    assert exit_.value.code == 2


def test_no_data_is_said_not_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    numbers = compute(tmp_path)
    assert numbers["notifications"] == 0 and numbers["rows"] == 0
    assert numbers["latency_ms"]["p50"] is None and numbers["top_errors"] == []
    assert all(entry["success_rate"] is None for entry in numbers["by_channel"].values())
    page = render_html(numbers)
    assert "No delivery events" in page and "<img" not in page
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--data-dir", str(tmp_path)]) == 0
    assert "no delivery events" in capsys.readouterr().err
    assert "No delivery events" in (tmp_path / "report.html").read_text()


def test_html_is_one_file_with_every_chart_and_escaped_data(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    assert main(["report", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    assert page.count('<img src="data:image/png;base64,') == 8
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "<style>" in page and "<link" not in page
    assert "Suppressed and bounced" in page and "suppressed: stop" in page
    assert list(tmp_path.iterdir()) == [out]


def test_the_json_only_gains_keys(data_dir: Path) -> None:
    """Scripts read ``herald report --format json``: keys are added, never taken away."""
    numbers = compute(data_dir)
    assert set(numbers) == {
        "schema_version", "since", "until", "first_event_at", "last_event_at", "rows",
        "duplicate_rows", "notifications", "success_rate", "outcomes", "by_channel",
        "by_provider", "by_type", "volume_per_hour", "latency_ms", "latency_by_channel",
        "retries_per_notification", "top_errors", "top_requester_services", "definitions",
        "data_dir", "generated_at",
        "suppressed_by_reason",  # issue 20
    }
    assert set(numbers["outcomes"]) == {*STATES}
    assert {"suppressed_by_reason", "bounced"} <= set(numbers["definitions"])
