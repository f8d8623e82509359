"""`python -m bench.backlog [--queued N | --quick] [--fill-only]`: Herald with a million queued.

Issue 13's backlog figures, measured from outside (HTTP, pids, ``/proc``) against a whole Herald
started in-process as ``bench.run`` does (own local Ray, no dashboard, 4 shards, SQLite FULL):
batch intake with every pool at 0 (which fills the backlog), memory per queued notification,
a shard's and a whole restart with the backlog queued, and asap accept→sent latency unloaded
and behind the backlog. ``BacklogRun``'s methods say how each is taken.

``measure_intake_postgres`` takes batch intake alone (its timed rounds, not the rest of the
fill) on a local PostgreSQL it starts and destroys (``capture.postgres``, durable), the server's
processes among the roles whose CPU is counted: the same figure on the other store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import httpx
import orjson
import ray

from bench import workload
from bench.backlog_figures import (
    BATCH,
    CLIENTS,
    IntakeFigure,
    LatencyFigure,
    MemoryFigure,
    RestartFigure,
    by_role,
    sample,
    total,
)
from bench.cpu import descendants
from bench.herald_counters import counters
from bench.procinfo import children_of, load_average
from capture.net import free_port
from capture.postgres import running_postgres
from capture.smtp_sink import SmtpSink
from herald.actor_names import NAMESPACE
from herald.config import Settings
from herald.sharding import host_name, shard_for_uid
from launcher.runtime import Herald

KEY, ADMIN = "bench-key-" + "b" * 20, "bench-admin-" + "a" * 20
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN}"}
SHARDS = 4
QUIET = {"email": 0, "sms": 0, "fax": 0, "browser": 0, "webhook": 0}  # while the backlog is filled
DELIVERING = {"email": 2, "sms": 1, "fax": 0, "browser": 0, "webhook": 0}  # after the restart
#: Seconds after the warm-up until each shard has shipped its delivery log once (every second).
SHIPPED = 2.5


def payload(channel: str, i: int, asap: bool = False) -> dict[str, Any]:
    """Notification ``i`` of ``bench.workload`` (the mixed benchmark's texts) on ``channel``."""
    body = workload.payload("backlog", 2 * i + (channel == "EMAIL"))  # even: SMS, odd: email
    return body | {"requester": {"asap": "yes"}} if asap else body


def client_batches(base: str, channel: str, batches: int, concurrency: int) -> tuple[float, int]:
    """(Client process) ``batches`` batches (encoded first), ``concurrency`` at a time: (s, accepted)."""
    bodies = [orjson.dumps({"notifications": [payload(channel, b * BATCH + i) for i in range(BATCH)]})
              for b in range(8)]

    async def worker(client: httpx.AsyncClient, first: int) -> int:
        accepted = 0
        for b in range(first, batches, concurrency):
            answer = await client.post("/v1/notifications/batch", content=bodies[b % 8])
            accepted += answer.raise_for_status().content.count(b'"details"')
        return accepted

    async def run() -> int:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300) as client:
            return sum(await asyncio.gather(*(worker(client, c) for c in range(concurrency))))

    start = time.perf_counter()
    accepted = asyncio.run(run())
    return time.perf_counter() - start, accepted


def client_singles(base: str, channel: str, rate: float, count: int, first: int = 0) -> list[str]:
    """(Client process) ``count`` asap single POSTs, ``rate`` a second (0: 32 at a time); tags."""
    async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore, i: int) -> str:
        async with gate:
            answer = await client.post("/v1/notifications", json=payload(channel, first + i, asap=True))
            return str(answer.raise_for_status().json()["details"]["tag"])

    async def run() -> list[str]:
        headers, limits = {"Authorization": f"Bearer {KEY}"}, httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60, limits=limits) as client:
            gate, tasks, start = asyncio.Semaphore(32 if rate <= 0 else 10_000), [], time.perf_counter()
            for i in range(count):
                if rate > 0:
                    await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one(client, gate, i)))
            return list(await asyncio.gather(*tasks))

    return asyncio.run(run())


class BacklogRun:
    """One Herald, its data dir and the client process. The figures, in this order: ``intake``
    (fills, and measures ``memory``), ``shard_restart``, ``whole_restart``, ``asap_unloaded``,
    ``asap_behind_backlog``; ``close()`` stops all and deletes the data dir."""

    def __init__(self, queued: int, database_url: str | None = None,
                 database_pid: int | None = None) -> None:
        self.queued = -(-queued // BATCH) * BATCH
        self.database_url, self.database_pid = database_url, database_pid
        self.clients = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self.client_pid = self.clients.submit(os.getpid).result()
        self.sink = SmtpSink().start()
        self.data_dir = Path(tempfile.mkdtemp(prefix="herald-backlog-"))  # last: close() deletes it
        self.http = httpx.Client(timeout=120, headers={"Authorization": f"Bearer {KEY}"})
        self.herald: Herald  # started by intake()
        self.memory: MemoryFigure  # measured by intake()

    def start_herald(self, pools: dict[str, int]) -> float:
        """Start Herald on the data dir (free ports, no dashboard, pools as given)."""
        settings = Settings(port=free_port(), data_dir=self.data_dir, api_keys={KEY: "bench"},
                            admin_key=ADMIN, smtp_url=self.sink.url, capture="sms", shards=SHARDS,
                            browser_port=free_port(), dashboard_port=0, pools=pools, pool_max={},
                            database_url=self.database_url)
        start, self.steps = time.perf_counter(), [("", time.perf_counter())]
        self.herald = Herald(settings).start(lambda step: self.steps.append((step, time.perf_counter())))
        self.steps.append(("", time.perf_counter()))
        self.base = f"http://127.0.0.1:{self.herald.settings.port}"  # Serve's, if one ran already
        self.http.base_url = httpx.URL(self.base)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # Ray's logging set INFO everywhere
        return time.perf_counter() - start

    def close(self) -> None:
        logging.getLogger("herald.capture").setLevel(logging.ERROR)  # late receipts get 404s
        if hasattr(self, "herald"):
            self.herald.stop(timeout=10)
        self.clients.shutdown()
        self.sink.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def herald_pids(self) -> list[int]:
        """This process and every process it started, but the clients and profilers; and the
        database server's, which left the tree."""
        ours = [os.getpid()] + [p.pid for p in children_of(os.getpid()) if p.pid != self.client_pid
                                and not any(w in p.cmdline for w in ("multiprocessing", "py-spy"))]
        return ours + self.database_pids()

    def database_pids(self) -> list[int]:
        root = self.database_pid
        return [] if root is None else [root, *descendants(root)]

    def shard(self, index: int) -> Any:
        return ray.get_actor(host_name(index, Settings().shards_per_process), namespace=NAMESPACE)

    def shard_pids(self) -> list[int]:
        return list(ray.get([self.shard(i).pid.remote(i) for i in range(SHARDS)]))

    def counter(self, name: str) -> int:
        return int(counters(self.http.get("/metrics").text).get(name, 0))

    def queued_now(self) -> int:
        shards = self.http.get("/v1/queue").json()["shards"]
        return sum(d.get("queued", 0) for s in shards for d in s["depth"].values())

    def admin(self, action: str) -> None:  # pause or resume SMS
        self.http.post(f"/v1/admin/channels/sms/{action}", headers=ADMIN_AUTH).raise_for_status()

    def post_until_accepted(self, shard: int, deadline: float = 120.0) -> float:
        """Seconds until a single POST routed to ``shard`` gets its 202 (retrying refusals)."""
        start = time.perf_counter()
        uid = next(f"u{i}" for i in range(10_000) if shard_for_uid(f"u{i}", SHARDS) == shard)
        body = payload("SMS", 0) | {"user": {"uid": uid, "name": {"first": "Bob"}}}
        answer: Any = None
        while time.perf_counter() - start < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (answer := self.http.post("/v1/notifications", json=body)).status_code == 202:
                    return time.perf_counter() - start
            time.sleep(0.05)
        raise TimeoutError(f"shard {shard} took no POST in {deadline:.0f} s: {answer and answer.text}")

    def batches(self, count: int) -> float:
        """Post ``count`` notifications (whole batches) from the client process; the seconds."""
        seconds, accepted = self.clients.submit(
            client_batches, self.base, "SMS", count // BATCH, CLIENTS).result()
        if accepted != count // BATCH * BATCH:
            raise RuntimeError(f"only {accepted} of {count} accepted")
        return seconds

    def intake(self, rounds: int = 3, fill: bool = True) -> IntakeFigure:
        """Start Herald with every pool at 0 and fill: ``rounds`` timed rounds of a tenth each,
        then (``fill``) the rest; memory before, half way and after (``self.memory``)."""
        self.start_herald(QUIET)
        self.batches(2 * BATCH)  # warm-up: connections, Serve's router, the shards' caches
        time.sleep(SHIPPED)  # and the delivery log's first shipment (Arrow loaded, its pool)
        pids, names = self.shard_pids(), {os.getpid(): "driver", self.client_pid: "client"}
        marks = [(self.queued_now(), sample(self.herald_pids(), names))]
        size = max(BATCH, self.queued // 10 // BATCH * BATCH)
        cpu = sample([*self.herald_pids(), self.client_pid], names)
        rates = [size / self.batches(size) for _ in range(rounds)]
        used = by_role(cpu, sample([*self.herald_pids(), self.client_pid], names), "cpu")
        cpu_ms = {k: v * 1e6 / (size * rounds) for k, v in used.items()}
        if not fill:
            return IntakeFigure(statistics.median(rates), rates, None, cpu_ms, load_average(),
                                "PostgreSQL (local, fsync on)" if self.database_url else "SQLite FULL")
        filled, spent = 2 * BATCH + size * rounds, 0.0
        for target in (self.queued // 2, self.queued):
            if target > filled:
                spent += self.batches(target - filled)
                filled = target
            marks.append((self.queued_now(), sample(self.herald_pids(), names)))
        self.memory = MemoryFigure([q for q, _ in marks], [total(m, pids) for _, m in marks],
                                   by_role(marks[0][1], marks[2][1], "rss"), load := load_average())
        rest = self.queued - 2 * BATCH - size * rounds  # its rate, to compare with the rounds'
        return IntakeFigure(statistics.median(rates), rates, rest / max(1e-9, spent), cpu_ms, load)

    def shard_restart(self, index: int = 0) -> RestartFigure:
        """SIGKILL the process hosting shard ``index`` (with the default HERALD_SHARDS_PER_PROCESS,
        every shard); a POST routed to it is sent at once and retried until 202."""
        handle = self.shard(index)
        old, queued = ray.get(handle.pid.remote(index)), self.queued_now()
        with ThreadPoolExecutor(1) as probe:
            start = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            serving = probe.submit(self.post_until_accepted, index)
            while ray.get(handle.pid.remote(index), timeout=120) == old:
                time.sleep(0.02)
            process = time.perf_counter() - start
            ray.get(handle.ready.remote(index), timeout=120)
            ready = time.perf_counter() - start
            return RestartFigure("a queue process", queued, process, ready, serving.result(), load_average())

    def whole_restart(self) -> RestartFigure:
        """Pause SMS (kept on disk), stop Herald, start it with delivering pools: until every
        shard takes a POST."""
        self.admin("pause")
        queued, stop = self.queued_now(), time.perf_counter()
        self.herald.stop(timeout=10)
        start = time.perf_counter()
        started = self.start_herald(DELIVERING)
        ray.get([self.shard(i).ready.remote(i) for i in range(SHARDS)], timeout=300)
        ready = time.perf_counter() - start
        for index in range(SHARDS):
            self.post_until_accepted(index)
        steps = "".join(f", {name.rstrip('…')} {end - at:.1f} s"
                        for (name, at), (_, end) in itertools.pairwise(self.steps) if name)
        return RestartFigure("whole Herald", queued, started, ready, time.perf_counter() - start,
                             load_average(), f"; stop {start - stop:.1f} s{steps}")

    def latencies(self, tags: list[str]) -> list[float]:
        """accept→sent of each tag (``?wait`` until it is sent), from its status history."""
        async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore, tag: str) -> float:
            async with gate:
                for _ in range(10):
                    view = (await client.get(f"/v1/notifications/{tag}?wait=30")).json()
                    if sent := [h["at"] for h in view["history"] if h["outcome"] == "sent"]:
                        return float(sent[0] - view["created_at"])
            raise TimeoutError(f"{tag} not sent within 300 s")

        async def run() -> list[float]:
            headers, gate = {"Authorization": f"Bearer {KEY}"}, asyncio.Semaphore(32)
            async with httpx.AsyncClient(base_url=self.base, headers=headers, timeout=90) as client:
                return list(await asyncio.gather(*(one(client, gate, t) for t in tags)))

        return asyncio.run(run())

    def asap_unloaded(self, seconds: float = 20.0, burst: int = 2000) -> LatencyFigure:
        """Email, nothing ahead: asap single POSTs at half the delivered/s of a burst of them."""
        sent, start = self.counter("sent"), time.perf_counter()
        self.clients.submit(client_singles, self.base, "EMAIL", 0, burst).result()
        posted = time.perf_counter() - start
        while self.counter("sent") - sent < burst:
            time.sleep(0.05)
        peak = burst / (time.perf_counter() - start)
        tags = self.clients.submit(client_singles, self.base, "EMAIL", peak / 2,
                                   int(peak / 2 * seconds)).result()
        return LatencyFigure("email, no backlog, half of max", peak / 2, self.latencies(tags),
                             f"max {peak:,.0f} delivered/s for a burst of {burst:,} asap single "
                             f"POSTs, posted in {posted:.1f} s", load_average())

    def asap_behind_backlog(self, seconds: float = 20.0, rate: float = 20.0,
                            loaded: bool = False) -> LatencyFigure:
        """Resume SMS: its pool drains the normal-priority backlog while asap SMS overtake it;
        ``loaded``: while a busy loop per core competes for the CPU (``busy_cores``)."""
        self.admin("resume")
        time.sleep(3)  # the pool is leasing full batches by now
        first = 10**6 + (10**6 if loaded else 0)  # the asap tags of each run stay distinct
        with busy_cores(os.cpu_count() or 1) if loaded else contextlib.nullcontext():
            sent, start, ahead = self.counter("sent"), time.perf_counter(), self.queued_now()
            tags = self.clients.submit(client_singles, self.base, "SMS", rate, int(rate * seconds),
                                       first).result()
            drained = (self.counter("sent") - sent) / (time.perf_counter() - start)
            latencies = self.latencies(tags)
        what = "SMS, behind the backlog" + (", every core busy" if loaded else "")
        return LatencyFigure(what, rate, latencies,
                             f"{ahead:,} normal SMS queued ahead, pool draining {drained:,.0f}/s",
                             load_average())


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` processes spinning at normal priority: a box loaded by other work, on purpose
    (issue 19's asap target holds on a loaded box too). Each is stopped by its pid."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@dataclass(frozen=True, slots=True)
class BacklogFigures:
    intake: IntakeFigure
    memory: MemoryFigure
    shard_restart: RestartFigure
    whole_restart: RestartFigure
    asap_unloaded: LatencyFigure
    asap_behind_backlog: LatencyFigure
    asap_loaded: LatencyFigure | None = None  # behind the backlog, every core busy

    def lines(self) -> list[str]:
        return [line for f in fields(self) if (figure := getattr(self, f.name)) is not None
                for line in figure.lines()]


def measure(queued: int = 1_000_000, asap_seconds: float = 20.0,
            loaded: bool = True) -> BacklogFigures:
    """Every figure, in the one order that works: fill, kill a shard, restart, latency (and
    ``loaded``, latency behind the backlog again with every core busy)."""
    run = BacklogRun(queued)
    try:  # arguments are evaluated in order: run.memory once run.intake() has filled
        return BacklogFigures(run.intake(), run.memory, run.shard_restart(), run.whole_restart(),
                              run.asap_unloaded(asap_seconds), run.asap_behind_backlog(asap_seconds),
                              run.asap_behind_backlog(asap_seconds, loaded=True) if loaded else None)
    finally:
        run.close()


def measure_intake_postgres(queued: int = 1_000_000, rounds: int = 3) -> IntakeFigure:
    """Batch intake's timed rounds (a tenth of ``queued`` each) on a local, durable PostgreSQL."""
    with running_postgres(durable=True) as postgres:
        run = BacklogRun(queued, postgres.url, postgres.pid())
        try:
            return run.intake(rounds, fill=False)
        finally:
            run.close()


def measure_fill(queued: int = 1_000_000) -> list[str]:
    """Only the fill: batch intake and memory per queued notification (no restarts, no latency)."""
    run = BacklogRun(queued)
    try:
        intake = run.intake()
        return intake.lines() + run.memory.lines()
    finally:
        run.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queued", type=int, default=1_000_000, help="the backlog (1,000,000)")
    parser.add_argument("--quick", action="store_true", help="a backlog of 100,000, 10 s latency runs")
    parser.add_argument("--postgres", action="store_true",
                        help="also batch intake on a local PostgreSQL (its timed rounds only)")
    parser.add_argument("--fill-only", action="store_true",
                        help="only batch intake and memory per queued (no restarts, no latency)")
    args = parser.parse_args()
    started, queued = time.perf_counter(), 100_000 if args.quick else args.queued
    lines = measure_fill(queued) if args.fill_only else measure(queued, 10.0 if args.quick else 20.0).lines()
    if args.postgres:
        lines += measure_intake_postgres(queued).lines()
    print(f"\nHerald backlog benchmark — {os.cpu_count()} cores, {time.perf_counter() - started:.0f} s",
          *("  " + line for line in lines), sep="\n")


if __name__ == "__main__":
    main()
