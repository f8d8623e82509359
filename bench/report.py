"""`python -m bench.report --rows 10000000`: how long `herald report` takes on that many log rows.

Generates a synthetic rolled-up delivery log (vectorised numpy/pyarrow, no per-row Python) in the
rollup's hive layout, then runs ``herald report --format json`` and ``herald report`` (HTML) as
subprocesses and prints each one's wall and CPU time and peak RSS (``wait4``'s ``ru_maxrss``).
``--scaling`` also runs at a quarter and half of ``--rows``, to show how memory grows.

The mix: ~30 % of notifications retried (1-3 times), sms/fax receipts turning sent into
delivered (some failed), a few dead, failed, cancelled or still pending; acceptance follows a
day/night curve over seven days; about 3.9 rows per notification.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from herald.log_schema import SCHEMA

CHANNELS = ["email", "sms", "fax", "browser"]
CHANNEL_SHARE = [0.45, 0.3, 0.05, 0.2]
PROVIDERS = {"email": ["smtp"], "sms": ["twilio", "twilio-backup"], "fax": ["telnyx"],
             "browser": ["websocket"]}
SERVICES = ["billing", "auth", "orders", "shipping", "marketing", "support", "reports",
            "security", "onboarding", "payroll", "<script>alert(1)</script>"]
CODES = ["421", "450", "timeout", "30003", "30005", "503", "429", "550", "connection reset"]
#: scenario → (events after the retries, as (event, status) pairs); retries come first.
SCENARIOS: list[list[tuple[str, str]]] = [
    [("attempt", "sent"), ("final", "sent")],                            # 0 sent
    [("attempt", "delivered"), ("final", "delivered")],                  # 1 browser delivered
    [("attempt", "sent"), ("final", "sent"), ("final", "delivered")],    # 2 receipt: delivered
    [("attempt", "sent"), ("final", "sent"), ("final", "failed")],       # 3 receipt: failed
    [("attempt", "failed"), ("final", "failed")],                        # 4 refused
    [("final", "dead")],                                                 # 5 dead (after 3 retries)
    [("final", "cancelled")],                                            # 6 cancelled
    [],                                                                  # 7 pending
]
#: per channel: probability of each scenario above
MIX = {
    "email": [0.93, 0, 0, 0, 0.03, 0.02, 0.01, 0.01],
    "sms": [0.12, 0, 0.78, 0.04, 0.03, 0.01, 0.01, 0.01],
    "fax": [0.1, 0, 0.75, 0.05, 0.05, 0.03, 0.01, 0.01],
    "browser": [0, 0.94, 0, 0, 0, 0.03, 0.01, 0.02],
}
ROWS_PER_NOTIFICATION = 3.86
PARTITIONING = ds.partitioning(pa.schema([("dt", pa.date32()), ("channel", pa.string())]),
                               flavor="hive")


def _strings(values: list[str], codes: np.ndarray) -> pa.Array:
    return pc.cast(pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)),
                                                  pa.array(values)), pa.string())


def _tags(rng: np.random.Generator, count: int, start: int) -> pa.Array:
    """``count`` distinct 32-character hex tags, made as bytes without a Python loop."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    raw = rng.integers(0, 16, size=(count, 32), dtype=np.uint8)
    serial = (np.arange(start, start + count, dtype=np.int64)[:, None]
              >> (4 * np.arange(7, -1, -1))) & 15  # the first 8 digits: a serial, so unique
    raw[:, :8] = serial.astype(np.uint8)
    return pc.cast(pa.array(digits[raw].view("S32").ravel()), pa.string())


def chunk(rng: np.random.Generator, notifications: int, start: int, first_id: int, days: int,
          day0: np.datetime64) -> pa.Table:
    """The rows of ``notifications`` notifications numbered from ``start``, event ids from
    ``first_id``."""
    channel = rng.choice(len(CHANNELS), size=notifications, p=CHANNEL_SHARE)
    scenario = np.empty(notifications, dtype=np.int64)
    for c, name in enumerate(CHANNELS):
        mine = channel == c
        scenario[mine] = rng.choice(len(SCENARIOS), size=int(mine.sum()), p=MIX[name])
    retries = np.where(rng.random(notifications) < 0.3, rng.integers(1, 4, notifications), 0)
    retries[scenario == 5] = 3
    retries[scenario >= 6] = 0
    tail = np.array([len(s) for s in SCENARIOS])[scenario]
    per = 1 + retries + tail
    owner = np.repeat(np.arange(notifications), per)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(per) - per, per)
    # Day/night: acceptance twice as likely at 14:00 as at 02:00.
    hour = rng.choice(24, size=notifications, p=_daily_curve())
    accepted = (rng.integers(0, days, notifications) * 86_400_000_000
                + hour * 3_600_000_000 + rng.integers(0, 3_600_000_000, notifications))
    is_retry = (offset >= 1) & (offset <= retries[owner])
    step = len(max(SCENARIOS, key=len))
    template = np.full((len(SCENARIOS), step), -1)
    names: list[tuple[str, str]] = [("accepted", "queued"), ("attempt", "retry")]
    for s, events in enumerate(SCENARIOS):
        for i, pair in enumerate(events):
            if pair not in names:
                names.append(pair)
            template[s, i] = names.index(pair)
    kind = np.where(offset == 0, 0, np.where(is_retry, 1, template[
        scenario[owner], np.clip(offset - retries[owner] - 1, 0, step - 1)]))
    # Delays between a notification's events: ~1 s per attempt, backoff for retries, minutes
    # for receipts (the second final).
    delay = rng.lognormal(6.5, 0.8, len(owner))  # ms, median ~0.7 s
    delay[is_retry] += rng.exponential(4000.0, int(is_retry.sum()))
    receipt = (offset == per[owner] - 1) & np.isin(scenario[owner], [2, 3])
    delay[receipt] += rng.exponential(45_000.0, int(receipt.sum()))
    delay[offset == 0] = 0.0
    latency = np.cumsum(delay)
    latency -= np.repeat(latency[np.cumsum(per) - per], per)
    at_us = accepted[owner] + (latency * 1000).astype(np.int64)
    chan = channel[owner]
    status_of = np.array([status for _, status in names])[kind]  # small: names has ~8 entries
    provider_choice = rng.integers(0, 2, len(owner))
    provider_codes = np.select([chan == 0, chan == 1, chan == 2], [0, 1 + provider_choice, 3], 4)
    no_provider = (kind == 0) | (status_of == "cancelled")
    has_code = is_retry | (status_of == "failed") | (status_of == "dead")
    tags = _tags(rng, notifications, start)
    return pa.table({
        "shard": pa.array((owner % 8).astype(np.int32)),
        "event_id": pa.array(np.arange(len(owner), dtype=np.int64) + first_id),
        "tag": tags.take(pa.array(owner)),
        "tenant": _strings(["acme", "globex", "initech"], (owner % 3)),
        "type": _strings([f"{c}_{ch.upper()}" for ch in CHANNELS for c in ("CM", "OTP", "ALERT")],
                         chan * 3 + (owner * 7 % 3)),
        "channel": _strings(CHANNELS, chan),
        "event": _strings([event for event, _ in names], kind),
        "status": _strings([status for _, status in names], kind),
        "provider": pa.array(np.array(["smtp", "twilio", "twilio-backup", "telnyx", "websocket"],
                                      dtype=object)[provider_codes], mask=no_provider),
        "attempt": pa.array(np.minimum(offset, 1 + retries[owner]).astype(np.int32)),
        "error_code": pa.array(np.array(CODES, dtype=object)[rng.integers(0, len(CODES), len(owner))],
                               mask=~has_code),
        "requester_service": pa.array(
            np.array(SERVICES, dtype=object)[(owner * 2654435761 % 97) % len(SERVICES)],
            mask=(owner % 13) == 0),
        "priority": pa.array((owner % 3).astype(np.int8)),
        "at": pa.array(day0.astype("datetime64[us]").astype(np.int64) + at_us,
                       pa.int64()).cast(SCHEMA.field("at").type),
        "latency_ms": pa.array(latency),
    }, schema=SCHEMA)


def _daily_curve() -> np.ndarray:
    curve = 2 + np.sin((np.arange(24) - 8) / 24 * 2 * np.pi)
    return np.asarray(curve / curve.sum())


def generate(rows: int, data_dir: Path, days: int = 7, seed: int = 1) -> int:
    """Write about ``rows`` rows under ``data_dir/analytics/events``; the rows written."""
    rng = np.random.default_rng(seed)
    root = data_dir / "analytics" / "events"
    notifications = int(rows / ROWS_PER_NOTIFICATION)
    per_chunk = 500_000
    written = 0
    for start in range(0, notifications, per_chunk):
        table = chunk(rng, min(per_chunk, notifications - start), start, written, days,
                      np.datetime64("2026-03-02"))
        table = table.append_column("dt", pc.cast(table["at"], pa.date32()))
        ds.write_dataset(table, root, format="parquet", partitioning=PARTITIONING,
                         basename_template=f"part-{start:09d}-{{i}}.parquet",
                         existing_data_behavior="overwrite_or_ignore",
                         # Row groups as big as the rollup's compacted files have.
                         min_rows_per_group=1 << 20, max_rows_per_group=1 << 20)
        written += table.num_rows
    return written


def timed(argv: list[str]) -> dict[str, Any]:
    """Run ``argv``; its wall and CPU seconds, peak RSS in MB and exit status.

    Linux carries a process's peak RSS across exec, so the parent that forks must stay small:
    the data is generated in a child of its own, never in this process.
    """
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(time.perf_counter() - started, 2),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "exit": process.returncode}


def measure(rows: int, work: Path) -> dict[str, Any]:
    data = work / f"rows-{rows}"
    generated = timed([sys.executable, "-m", "bench.report", "--rows", str(rows), "--keep", str(data)])
    written = sum(pq.ParquetFile(path).metadata.num_rows for path in data.rglob("*.parquet"))
    report = [sys.executable, "-m", "launcher.cli", "report", "--data-dir", str(data)]
    result = {"rows": written, "generate_seconds": generated["seconds"],
              "json": timed([*report, "--format", "json", "--out", str(work / "report.json")]),
              "html": timed([*report, "--out", str(work / "report.html")])}
    shutil.rmtree(data)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--scaling", action="store_true", help="also at rows/4 and rows/2")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="only generate into DIR (no timing), e.g. to open the report")
    args = parser.parse_args()
    if args.keep:
        print(f"{generate(args.rows, args.keep):,} rows under {args.keep}/analytics/events")
        return
    sizes = [args.rows // 4, args.rows // 2, args.rows] if args.scaling else [args.rows]
    with tempfile.TemporaryDirectory(prefix="herald-bench-report-") as tmp:
        for rows in sizes:
            result = measure(rows, Path(tmp))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
