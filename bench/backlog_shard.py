"""`python -m bench.backlog_shard [memory|speed]`: one queue shard alone, no Ray.

``memory``: one shard on SQLite (as ``bench.backlog`` runs it, but ``synchronous=OFF``: the disk
is not what is measured) fills with ``--queued`` notifications of ``bench.workload``, validated
in another process and pickled across in batches of 1,000 (as Ray hands them to a shard, so
nothing of intake's caches is counted). RSS of this process after a first batch (imports,
caches: ``bench.backlog`` too counts from after its warm-up), once the memory window is full,
half way and at the end: bytes per queued notification and per record of the window.

``speed``: enqueue and lease on ``MemoryStorage`` (its deep copies cost most of it) or on an
in-memory SQLite (``--storage sqlite``: rows encoded as on disk, no file): batches of 1,000
enqueued and flushed, then leased 100 at a time (each lease acked ``sent`` and flushed) until
drained; the median CPU µs per notification (this process's: the box is shared) of each, over
``--rounds`` rounds. With ``--queued`` beyond the window, the part beyond it goes to storage
and is read back as leases drain it.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import statistics
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from bench import workload
from herald.channels import Channel, Lane
from herald.memory_storage import MemoryStorage
from herald.models import validate_notification
from herald.notification import Notification
from herald.outcome import Outcome
from herald.queue import QueueShard
from herald.storage import SQLiteStorage

BATCH = 1000


def batch(first: int, count: int, now: float) -> bytes:
    """(Client process) notifications ``first``… as a shard receives them: pickled, validated."""
    return pickle.dumps([validate_notification(workload.payload("backlog", 2 * i + i % 2),
                                               tenant="bench", now=now, shards=1)
                         for i in range(first, first + count)], protocol=5)


def rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS"))


def memory(queued: int, window: int) -> list[str]:
    """RSS per queued notification over a fill of ``queued`` with a window of ``window``."""
    now, marks = time.time(), {}
    points = {"window full": window, "half way": queued // 2, "end": queued}
    with tempfile.TemporaryDirectory() as data, ProcessPoolExecutor(2) as clients:
        shard = QueueShard(SQLiteStorage(Path(data) / "shard.db", "OFF"), {}, now, memory_window=window)
        ahead: deque[Future[bytes]] = deque(clients.submit(batch, b * BATCH, BATCH, now)
                                            for b in range(min(4, queued // BATCH)))
        for b in range(queued // BATCH):
            if b == 1:  # after a warm-up batch
                gc.collect()
                marks["start"] = rss()
            notifications = pickle.loads(ahead.popleft().result())
            if b + 4 < queued // BATCH:
                ahead.append(clients.submit(batch, (b + 4) * BATCH, BATCH, now))
            shard.enqueue(notifications, now)
            shard.flush()
            del notifications
            for name in (n for n, at in points.items() if at == (b + 1) * BATCH):
                gc.collect()
                marks[name] = rss()
    start, full, half, end = (marks[n] for n in ("start", "window full", "half way", "end"))

    def per(grown: int, count: int) -> str:
        return f"{grown / max(1, count):.0f} B"

    return [f"one shard, window {window:,}, {BATCH:,} -> {queued:,} queued: RSS {start / 2**20:.0f} -> "
            f"{full / 2**20:.0f} (window full) -> {end / 2**20:.0f} MiB",
            f"  {per(end - start, queued - BATCH)} per queued; {per(full - start, window - BATCH)} per"
            f" record of the window; {per(end - half, queued - queued // 2)} per queued beyond half way"]


def speed(queued: int, window: int, rounds: int, store: str = "memory") -> list[str]:
    """Median µs per notification to enqueue (and flush) and to lease (and ack, flush)."""
    now = time.time()
    notifications: list[Notification] = pickle.loads(batch(0, queued, now))
    lanes = [Lane.of_actor(Channel.SMS, 0), Lane.of_actor(Channel.EMAIL, 0)]
    enqueue, lease = [], []
    for r in range(rounds):
        storage = MemoryStorage() if store == "memory" else SQLiteStorage(Path(":memory:"))
        shard = QueueShard(storage, {}, now, memory_window=window)
        items = [n for n in notifications]  # the same objects each round: a shard copies none
        gc.collect()
        start = time.process_time()
        for b in range(0, queued, BATCH):
            shard.enqueue(items[b:b + BATCH], now + r)
            shard.flush()
        enqueue.append((time.process_time() - start) / queued * 1e6)
        start, leased = time.process_time(), 0
        while leased < queued:
            got = [d for lane in lanes for d in shard.lease(lane, 100, now + r, 60.0)]
            if not got:
                raise RuntimeError(f"only {leased} of {queued} leased")
            shard.ack([Outcome(d.tag, "sent", "bench", lease=d.lease) for d in got], now + r)
            shard.flush()
            leased += len(got)
        lease.append((time.process_time() - start) / queued * 1e6)
    return [f"one shard on {store}, window {window:,}, {queued:,} queued, {rounds} rounds: "
            f"enqueue+flush {statistics.median(enqueue):.1f} µs, lease+ack+flush "
            f"{statistics.median(lease):.1f} µs per notification (medians; rounds "
            f"{', '.join(f'{e:.1f}/{le:.1f}' for e, le in zip(enqueue, lease, strict=True))})"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("memory", "speed"))
    parser.add_argument("--queued", type=int, default=250_000, help="(a shard's share of 1 M)")
    parser.add_argument("--window", type=int, default=20_000, help="the memory window")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--storage", choices=("memory", "sqlite"), default="memory")
    args = parser.parse_args()
    lines = memory(args.queued, args.window) if args.what == "memory" \
        else speed(args.queued, args.window, args.rounds, args.storage)
    print(f"{os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
          *lines, sep="\n")


if __name__ == "__main__":
    main()
