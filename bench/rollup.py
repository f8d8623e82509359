"""`python -m bench.rollup --rows N`: Herald's rollup against DuckDB on the same delivery-log segments.

Generates N synthetic log rows (vectorised: numpy + pyarrow, no per-row Python) as closed
segments, exactly as shards write them (Arrow IPC, zstd, ``log/shard-<n>/<first>-<last>.arrow``),
spread over ``--days`` UTC days and the four channels. Then, in the same run on the same files:

- Herald: ``jobs.rollup.rollup()`` on a local Ray with ``--cpus`` CPUs: Ray tasks read the
  segments, drop already-counted ids, write hive-partitioned Parquet, commit the manifest.
- DuckDB: the same read + ``dt``/``channel`` hive-partitioned Parquet write with
  ``COPY … PARTITION_BY``. DuckDB cannot read Arrow IPC files without an extension download,
  so it scans them as a ``pyarrow.dataset`` (format ``ipc``; DuckDB pulls the batches with its
  own threads, which measured faster than loading a table with pyarrow first). It does no
  deduplication and keeps no manifest.

Both write snappy Parquet with all cores. Ray's workers are started (and import pyarrow)
by a warm-up rollup of a tiny data set first: a running Herald has them already. Prints rows/s
for each (the median of ``--rounds``) and the ratio Herald / DuckDB, and checks that both wrote
the same counts.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import ray

from herald.log_schema import SCHEMA
from jobs.rollup import rollup

START = 1_767_225_600  # 2026-01-01 00:00 UTC
CHANNELS = ["email", "sms", "fax", "browser"]
TYPES = ["CM_EMAIL", "CM_SMS", "DOC_FAX", "CM_BROWSER"]
PROVIDERS = ["smtp", "twilio", "telnyx", "gateway"]
EVENTS = ["accepted", "attempt", "final"]
STATUSES = ["queued", "sent", "retry", "failed", "delivered", "dead"]
ERRORS = ["550", "21211", "30001", "429", "timeout"]
SERVICES = ["CM_DA_MESSAGE_SERVICE", "BILLING", "AUTH_OTP", "DOCS", "MARKETING"]
TENANTS = ["acme", "globex", "initech", "umbrella"]


def _uuids(rng: np.random.Generator, count: int) -> pa.Array:
    """``count`` random UUID-shaped strings, built as one byte matrix."""
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    hexed = np.stack([digits[raw >> 4], digits[raw & 15]], axis=2).reshape(count, 32)
    text = np.full((count, 36), ord("-"), dtype=np.uint8)
    for (start, end), offset in zip(((0, 8), (9, 13), (14, 18), (19, 23), (24, 36)),
                                    (0, 8, 12, 16, 20), strict=True):
        text[:, start:end] = hexed[:, offset:offset + end - start]
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(36), count,
                                                 [None, pa.py_buffer(text.tobytes())])
    return fixed.cast(pa.binary()).cast(pa.string())


def _pick(rng: np.random.Generator, values: list[str], count: int, nulls: float = 0.0) -> pa.Array:
    indices = pa.array(rng.integers(0, len(values), count, dtype=np.int32),
                       mask=rng.random(count) < nulls if nulls else None)
    return pc.take(pa.array(values), indices)


def segment_table(rng: np.random.Generator, shard: int, first_id: int, count: int,
                  days: int) -> pa.Table:
    """``count`` log rows of one shard with ids from ``first_id``, in SCHEMA."""
    kind = rng.integers(0, 4, count, dtype=np.int32)  # one draw: channel, type and provider agree
    at_us = (START + rng.random(count) * days * 86400) * 1e6
    columns = {
        "shard": pa.array(np.full(count, shard, dtype=np.int32)),
        "event_id": pa.array(np.arange(first_id, first_id + count, dtype=np.int64)),
        "tag": pc.take(_uuids(rng, count // 3 + 1), pa.array(np.arange(count) // 3)),
        "tenant": _pick(rng, TENANTS, count),
        "type": pc.take(pa.array(TYPES), pa.array(kind)),
        "channel": pc.take(pa.array(CHANNELS), pa.array(kind)),
        "event": _pick(rng, EVENTS, count),
        "status": _pick(rng, STATUSES, count),
        "provider": pc.take(pa.array(PROVIDERS), pa.array(kind)),
        "attempt": pa.array(rng.integers(0, 4, count, dtype=np.int32)),
        "error_code": _pick(rng, ERRORS, count, nulls=0.9),
        "requester_service": _pick(rng, SERVICES, count, nulls=0.05),
        "priority": pa.array(rng.integers(0, 10, count, dtype=np.int8)),
        "at": pa.array(np.sort(at_us).astype(np.int64), type=pa.timestamp("us", tz="UTC")),
        "latency_ms": pa.array(rng.exponential(800.0, count)),
    }
    return pa.table(columns, schema=SCHEMA)


def generate(data_dir: Path, rows: int, shards: int, segment_rows: int, days: int) -> list[Path]:
    """Closed segments holding ``rows`` rows in all, as the log shipper names and writes them."""
    rng = np.random.default_rng(7)
    paths = []
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    per_shard = [rows // shards + (1 if i < rows % shards else 0) for i in range(shards)]
    for shard, total in enumerate(per_shard):
        directory = data_dir / "log" / f"shard-{shard}"
        directory.mkdir(parents=True, exist_ok=True)
        for first in range(1, total + 1, segment_rows):
            count = min(segment_rows, total - first + 1)
            path = directory / f"{first:014d}-{first + count - 1:014d}.arrow"
            table = segment_table(rng, shard, first, count, days)
            with pa.ipc.new_file(path, SCHEMA, options=options) as writer:
                writer.write_table(table, max_chunksize=8192)  # the shipper's batch size
            paths.append(path)
    return paths


def run_duckdb(segments: list[Path], out: Path) -> float:
    started = time.perf_counter()
    log = ds.dataset([str(path) for path in segments], format="ipc")
    with duckdb.connect() as db:
        db.execute("SET TimeZone = 'UTC'")  # dt is the UTC day, as in Herald
        db.execute("SET preserve_insertion_order = false")  # Herald does not keep it either
        db.register("log", log)
        db.execute(f"COPY (SELECT *, CAST(log.at AS DATE) AS dt FROM log) TO '{out}' "
                   "(FORMAT parquet, COMPRESSION snappy, PARTITION_BY (dt, channel))")
    return time.perf_counter() - started


def _counts(directory: Path) -> list[tuple[str, str, int]]:
    with duckdb.connect() as db:
        return sorted(db.sql(
            f"SELECT CAST(dt AS VARCHAR), channel, count(*) FROM read_parquet("
            f"'{directory}/**/*.parquet', hive_partitioning=true) GROUP BY ALL").fetchall())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rollup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--segment-rows", type=int, default=100_000,
                        help="rows per segment (HERALD_LOG_ROTATE_ROWS)")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="herald-bench-rollup-"))
    try:
        started = time.perf_counter()
        segments = generate(work / "herald", args.rows, args.shards, args.segment_rows, args.days)
        size = sum(p.stat().st_size for p in segments) / 1e6
        print(f"generated {args.rows:,} rows in {len(segments)} segments ({size:,.0f} MB zstd) "
              f"in {time.perf_counter() - started:.1f} s", flush=True)
        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False,
                 logging_level=logging.WARNING)
        generate(work / "warmup", 1000, 2, 500, 1)
        rollup(work / "warmup")  # start Ray's workers: a running Herald has them already

        herald_times, duck_times = [], []
        for _ in range(args.rounds):
            shutil.rmtree(work / "herald" / "analytics", ignore_errors=True)  # a fresh rollup
            report = rollup(work / "herald")
            assert report.rows_written == args.rows, report.summary()
            herald_times.append(report.seconds)
            print(f"herald : {args.rows:,} rows in {report.seconds:6.2f} s = "
                  f"{args.rows / report.seconds:12,.0f} rows/s ({report.files_written} files)",
                  flush=True)
            shutil.rmtree(work / "duckdb", ignore_errors=True)
            duck_times.append(run_duckdb(segments, work / "duckdb"))
            print(f"duckdb : {args.rows:,} rows in {duck_times[-1]:6.2f} s = "
                  f"{args.rows / duck_times[-1]:12,.0f} rows/s (duckdb {duckdb.__version__})",
                  flush=True)
        herald_rate = args.rows / statistics.median(herald_times)
        duck_rate = args.rows / statistics.median(duck_times)
        print(f"median of {args.rounds}: herald {herald_rate:,.0f} rows/s, "
              f"duckdb {duck_rate:,.0f} rows/s", flush=True)
        same = _counts(work / "herald" / "analytics" / "events") == _counts(work / "duckdb")
        print(f"ratio herald/duckdb: {herald_rate / duck_rate:.2f}x; "
              f"same counts per dt/channel: {'yes' if same else 'NO'}", flush=True)
        if not same:
            raise SystemExit("the two outputs differ")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
