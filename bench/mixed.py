"""The mixed figure: Herald against the box's ceiling and against Celery + Redis, side by side.

Each system delivers the same notifications (``bench.workload``: half SMS to the
Twilio-compatible capture API, half email over SMTP) to a fresh pair of sinks
(``bench.sinks``, each in its own process), after a small warm-up on the same sinks.
Delivered/s = notifications / seconds from the first submit to the last arrival at the sinks,
and the sinks must hold every one exactly once (``SinkLoss`` otherwise).

1. **ceiling** (``bench.ceiling``): one asyncio process sends straight to the sinks.
2. **herald**: a whole Herald (its own local Ray, 4 shards, SQLite ``synchronous=FULL``), fed
   batches of 1,000 through ``/v1/notifications/batch`` (4 in flight), sending through its
   real Twilio and SMTP providers to the sinks (no capture peers of its own), receipts
   included: the Twilio sink posts each SMS's signed ``sent`` and ``delivered`` back to it.
3. **herald-pg**: the same Herald on a local PostgreSQL the bench starts and destroys
   (``capture.postgres``, durable: fsync, ``synchronous_commit`` and full page writes on); the
   server's processes count in its CPU.
4. **celery** (``bench.celery_peer``): Celery 5, Redis broker on a free loopback port,
   ``--concurrency 2 --pool prefork``, tasks enqueued with ``delay`` from 4 threads of 1,000
   (as Herald gets 4 batches in flight). Redis fsyncs each write by default, since Herald's
   ``202`` is on disk too; ``--celery-in-memory`` for Redis without persistence.

For each Herald its own ``/metrics`` (``bench.herald_counters``) says what the measured run
cost its store: commits per notification sent, read once the run's receipts are all in.

``python -m bench.mixed`` prints the lines; ``measure_mixed()`` returns ``MixedResult``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import herald_counters, workload
from bench.cpu import CpuMeter, cpu_of, descendants
from bench.herald_counters import StoreCounts
from bench.roles import cpu_by_role
from bench.sinks import Arrivals, Sinks
from capture.postgres import PostgresServer, running_postgres

KEY = "bench-key-" + "m" * 20
SYSTEMS = ("ceiling", "herald", "herald-pg", "celery")
HERALDS = ("herald", "herald-pg")
#: Herald gets batches of this size, this many in flight; Celery's producers mirror it.
BATCH, IN_FLIGHT = 1000, 4
#: Hears the pids worth profiling once a system runs (e.g. to start py-spy on them).
OnRunning = Callable[[str, list[int]], None]


@dataclass(frozen=True, slots=True)
class SystemFigure:
    """One system's run: every notification arrived once (else the run raised)."""

    name: str
    delivered: int
    seconds: float
    duplicates: int
    #: ``os.getloadavg()`` when the measured run started and when it ended.
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    #: CPU seconds of the system and its client (what submits), sinks excluded; of the sinks.
    cpu_seconds: float
    sink_cpu_seconds: float
    note: str = ""
    #: CPU seconds per kind of process (``bench.cpu.label``), largest first.
    cpu_breakdown: dict[str, float] = field(default_factory=dict)
    #: A Herald's own counts over the measured run, receipts included (None for the others).
    store: StoreCounts | None = None
    #: A Herald's CPU seconds per role (``bench.roles``: proxy, replica, shards…); empty for
    #: the others.
    cpu_roles: dict[str, float] = field(default_factory=dict)

    @property
    def per_s(self) -> float:
        return self.delivered / self.seconds

    @property
    def cpu_ms_per_notification(self) -> float:
        """Steadier than ``per_s`` on a shared box: what one notification costs the CPU."""
        return 1000 * self.cpu_seconds / self.delivered

    @property
    def commits_per_notification(self) -> float | None:
        return None if self.store is None else self.store.commits_per_sent

    @property
    def shard_calls_per_notification(self) -> float | None:
        return None if self.store is None else self.store.shard_calls_per_sent

    def cpu_ms_by_role(self) -> dict[str, float]:
        return {role: 1000 * cpu / self.delivered for role, cpu in self.cpu_roles.items()}


@dataclass(frozen=True, slots=True)
class MixedResult:
    """The figures of one ``measure_mixed`` run and Herald's ratios to the others."""

    total: int
    figures: dict[str, SystemFigure] = field(default_factory=dict)

    def ratio(self, other: str, system: str = "herald") -> float | None:
        """Delivered/s of ``system`` / ``other``'s (None unless both ran)."""
        if system not in self.figures or other not in self.figures:
            return None
        return self.figures[system].per_s / self.figures[other].per_s

    @property
    def herald_vs_ceiling(self) -> float | None:
        return self.ratio("ceiling")

    @property
    def herald_vs_celery(self) -> float | None:
        return self.ratio("celery")

    @property
    def postgres_vs_sqlite(self) -> float | None:
        """Herald on PostgreSQL's delivered/s / Herald on SQLite's."""
        return self.ratio("herald", system="herald-pg")

    def cpu_ratio(self, other: str, system: str = "herald") -> float | None:
        """CPU per notification of ``other`` / ``system``'s (below 1: ``system`` spends more)."""
        if system not in self.figures or other not in self.figures:
            return None
        return (self.figures[other].cpu_ms_per_notification
                / self.figures[system].cpu_ms_per_notification)

    def lines(self) -> list[str]:
        sms, emails = workload.split(self.total)
        out = [f"mixed: {self.total} notifications ({sms} SMS via the Twilio-compatible API + "
               f"{emails} email via SMTP), {os.cpu_count()} cores"]
        for figure in self.figures.values():
            load = (f"{figure.load_before[0]:.1f} → {figure.load_after[0]:.1f}")
            sinks = 1000 * figure.sink_cpu_seconds / figure.delivered
            out.append(f"  {figure.name:9s} {figure.per_s:7.0f} delivered/s  {figure.seconds:5.1f} s  "
                       f"{figure.cpu_ms_per_notification:5.2f} ms CPU/notification (sinks "
                       f"{sinks:.2f})  {figure.duplicates} duplicates  load(1 min) {load}")
            out.append(f"  {'':9s} {figure.note}")
            if figure.cpu_roles:
                roles = ", ".join(f"{role} {ms:.2f}" for role, ms in figure.cpu_ms_by_role().items())
                out.append(f"  {'':9s} ms CPU/notification by role: {roles}")
            if len(figure.cpu_breakdown) > 1:
                top = ", ".join(f"{name} {1000 * cpu / figure.delivered:.2f}"
                                for name, cpu in list(figure.cpu_breakdown.items())[:6])
                out.append(f"  {'':9s} ms CPU/notification by process: {top}")
            if figure.store is not None:
                out.append(f"  {'':9s} {_store_line(figure.store)}")
        pairs = [("herald", "ceiling"), ("herald", "celery"), ("herald-pg", "herald")]
        for system, other in pairs:
            ratio, cpu = self.ratio(other, system), self.cpu_ratio(other, system)
            if ratio is not None and cpu is not None:
                out.append(f"  {system}/{other:9s} {ratio:6.2f} in delivered/s, {cpu:6.2f} in CPU "
                           "per notification")
        return out


def _store_line(store: StoreCounts) -> str:
    per, calls = store.commits_per_sent, store.shard_calls_per_sent
    shard_calls = ("shard calls not counted" if store.shard_calls is None or calls is None
                   else f"{store.shard_calls:,} shard calls = {calls:.3f}/notification")
    if store.commits is None or per is None:
        return f"store commits not counted by this Herald ({store.sent} sent); {shard_calls}"
    return (f"store: {store.commits:,} commits for {store.sent:,} sent (+ {store.delivered:,} "
            f"receipts) = {per:.3f} commits/notification; {shard_calls}")


def _figure(name: str, start: float, arrivals: Arrivals, load: tuple[float, float, float],
            cpu: float, sink_cpu: float, note: str, breakdown: dict[str, float] | None = None,
            store: StoreCounts | None = None,
            roles: dict[str, float] | None = None) -> SystemFigure:
    return SystemFigure(name, arrivals.received, arrivals.last_at - start, arrivals.duplicates,
                        load, os.getloadavg(), cpu, sink_cpu, note, breakdown or {}, store,
                        roles or {})


def _timeout(total: int) -> float:
    return max(120.0, total / 20)


# ---- the ceiling ------------------------------------------------------------------------------


def run_ceiling(sinks: Sinks, total: int, warmup: int, on_running: OnRunning | None) -> SystemFigure:
    command = [sys.executable, "-m", "bench.ceiling", "--twilio-base-url", sinks.twilio_base_url,
               "--account-sid", sinks.account_sid, "--auth-token", sinks.auth_token,
               "--smtp-url", sinks.smtp_url, "--total", str(total), "--warmup", str(warmup)]
    load = os.getloadavg()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    if on_running:
        on_running("ceiling", [process.pid, *sinks.pids()])
    out, _ = process.communicate(timeout=_timeout(total))
    if process.returncode:
        raise RuntimeError(f"bench.ceiling failed (exit {process.returncode})")
    # Its warm-up shares the sinks' CPU counters: theirs is pro rata (the same per message).
    sink_cpu = cpu_of(sinks.pids()) * total / (total + warmup)
    report = json.loads(out.strip().splitlines()[-1])
    arrivals = sinks.wait("m", *workload.split(total), timeout=_timeout(total))
    return _figure("ceiling", report["start"], arrivals, load, report["cpu"], sink_cpu,
                   "one asyncio process (uvloop), direct: aiohttp keep-alive, "
                   "32 SMS in flight, 8 SMTP sessions; no queue, no durability")


# ---- Herald ---------------------------------------------------------------------------------


async def _post_all(base: str, run: str, total: int) -> float:
    """POST notifications ``0..total-1`` of ``run`` in batches; the monotonic time of the first."""
    batches = [[workload.payload(run, i) for i in range(s, min(s + BATCH, total))]
               for s in range(0, total, BATCH)]
    slots = asyncio.Semaphore(IN_FLIGHT)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120,
                                 trust_env=False) as client:

        async def post(batch: list[dict[str, Any]]) -> None:
            async with slots:
                response = await client.post("/v1/notifications/batch",
                                             json={"notifications": batch})
                response.raise_for_status()
                refused = [r for r in response.json()["results"] if "details" not in r]
                if refused:
                    raise RuntimeError(f"Herald refused {len(refused)}: {refused[0]}")

        start = time.monotonic()
        await asyncio.gather(*(post(batch) for batch in batches))
    return start


def run_herald(sinks: Sinks, total: int, warmup: int, on_running: OnRunning | None,
               postgres: PostgresServer | None = None) -> SystemFigure:
    """Herald on SQLite in its data dir, or on ``postgres`` (whose processes count in its CPU)."""
    from capture.net import free_port
    from herald.config import Settings
    from launcher.runtime import Herald

    name = "herald" if postgres is None else "herald-pg"
    server_pids = [] if postgres is None else [pid for pid in [postgres.pid()] if pid]
    (sms_w, _), (sms, _) = workload.split(warmup), workload.split(total)
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as data_dir:
        settings = Settings(
            port=free_port(), browser_port=free_port(), dashboard_port=0, data_dir=Path(data_dir),
            api_keys={KEY: "bench"}, metrics_token=herald_counters.METRICS_TOKEN, shards=4,
            capture="none", rollup_seconds=0, smtp_url=sinks.smtp_url, smtp_from=workload.EMAIL_FROM,
            twilio_account_sid=sinks.account_sid, twilio_auth_token=sinks.auth_token,
            twilio_base_url=sinks.twilio_base_url, twilio_from=workload.SMS_FROM,
            database_url=None if postgres is None else postgres.url)
        herald = _start_herald(Herald, settings)
        # Ray's logging config turned this process's root logger to INFO: not a line per poll.
        for logger in ("httpx", "httpcore"):
            logging.getLogger(logger).setLevel(logging.WARNING)
        base = f"http://127.0.0.1:{settings.port}"
        try:
            if warmup:
                asyncio.run(_post_all(base, "w", warmup))
                sinks.wait("w", *workload.split(warmup), timeout=_timeout(warmup))
            # The warm-up's receipts are in before the first reading: its commits stay out.
            before, _ = herald_counters.read_when(base, lambda c: c.delivered >= sms_w)
            if on_running:
                on_running(name, [*_ray_worker_pids(), *sinks.pids(), *server_pids])
            meter = CpuMeter(exclude=sinks.pids(), include=server_pids).start()
            sink_cpu = cpu_of(sinks.pids())
            load = os.getloadavg()
            start = asyncio.run(_post_all(base, "m", total))
            arrivals = sinks.wait("m", *workload.split(total), timeout=_timeout(total))
            cpu, sink_cpu = meter.stop(), cpu_of(sinks.pids()) - sink_cpu
            # Every receipt of the run is in (unless they stopped coming): its commits count.
            after, settled = herald_counters.read_when(
                base, lambda c: c.delivered - before.delivered >= sms)
        finally:
            herald.stop(timeout=10)
    pools = ", ".join(f"{k}={v}" for k, v in settings.pools.items() if k in ("email", "sms"))
    store = ("SQLite FULL" if postgres is None
             else "PostgreSQL (local, fsync + synchronous_commit on)")
    unsettled = "" if settled else f"; receipts stopped at {after.delivered - before.delivered}"
    return _figure(name, start, arrivals, load, cpu, sink_cpu,
                   f"batches of {BATCH}, {IN_FLIGHT} in flight, 4 shards, {store}, pools {pools}, "
                   f"real Twilio + SMTP providers, signed receipts back{unsettled}",
                   meter.breakdown, after - before, cpu_by_role(meter.processes))


def _start_herald(herald_type: Any, settings: Any) -> Any:
    """``Herald(settings).start()``, once more after a pause if it fails: on a box loaded by
    other work, a local Ray can miss its own start-up timeout (Herald stops what it started)."""
    try:
        return herald_type(settings).start()
    except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception on that timeout
        print(f"  … Herald did not start ({exc}); once more in 10 s", file=sys.stderr, flush=True)
        time.sleep(10)
        return herald_type(settings).start()


def _ray_worker_pids() -> list[int]:
    """This process's Ray workers (``ray::…``: shards, channel actors, intake, proxy), found
    among its descendants: other Rays on the box are not ours to profile."""
    pids = []
    for pid in sorted(descendants(os.getpid())):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"):
                pids.append(pid)
        except OSError:
            continue
    return pids


# ---- Celery + Redis -------------------------------------------------------------------------


def run_celery(sinks: Sinks, total: int, warmup: int, on_running: OnRunning | None,
               fsync: bool = True) -> SystemFigure:
    from bench.celery_peer import CeleryPeer, enqueue_range
    from bench.peers_redis import RedisServer

    with RedisServer(fsync=fsync) as redis, CeleryPeer(
            redis.url, sinks.twilio_base_url, sinks.account_sid, sinks.auth_token,
            sinks.smtp_url, concurrency=2, acks_late=fsync) as peer:

        def enqueue(run: str, count: int) -> float:
            chunks = [(s, min(s + BATCH, count)) for s in range(0, count, BATCH)]
            with ThreadPoolExecutor(IN_FLIGHT) as pool:
                start = time.monotonic()
                list(pool.map(lambda c: enqueue_range(run, *c), chunks))
            return start

        if warmup:
            enqueue("w", warmup)
            sinks.wait("w", *workload.split(warmup), timeout=_timeout(warmup))
        if on_running:
            on_running("celery", [*peer.pids(), *sinks.pids(), *filter(None, [redis.pid])])
        meter, sink_cpu = CpuMeter(exclude=sinks.pids()).start(), cpu_of(sinks.pids())
        load = os.getloadavg()
        start = enqueue("m", total)
        arrivals = sinks.wait("m", *workload.split(total), timeout=_timeout(total))
        cpu, sink_cpu = meter.stop(), cpu_of(sinks.pids()) - sink_cpu
        acks = "acks_late" if fsync else "acks early"
    return _figure("celery", start, arrivals, load, cpu, sink_cpu,
                   f"prefork 2, delay from {IN_FLIGHT} threads, Redis {redis.durability}, {acks}",
                   meter.breakdown)


# ---- the figure -----------------------------------------------------------------------------


def measure_mixed(total: int = 16_000, warmup: int = 400, systems: Sequence[str] = SYSTEMS,
                  celery_fsync: bool = True, on_running: OnRunning | None = None,
                  on_figure: Callable[[SystemFigure], None] | None = None) -> MixedResult:
    """Run each of ``systems`` against fresh sinks, one after the other; every one must
    deliver all ``total`` notifications exactly once."""
    figures: dict[str, SystemFigure] = {}
    for name in systems:
        account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        with Sinks(account_sid, auth_token) as sinks:
            if name == "ceiling":
                figure = run_ceiling(sinks, total, warmup, on_running)
            elif name == "herald":
                figure = run_herald(sinks, total, warmup, on_running)
            elif name == "herald-pg":
                with running_postgres(durable=True) as postgres:
                    figure = run_herald(sinks, total, warmup, on_running, postgres)
            elif name == "celery":
                figure = run_celery(sinks, total, warmup, on_running, fsync=celery_fsync)
            else:
                raise ValueError(f"unknown system {name!r} (one of {SYSTEMS})")
        figures[name] = figure
        if on_figure:
            on_figure(figure)
    return MixedResult(total, figures)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=16_000)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--only", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--celery-in-memory", action="store_true",
                        help="Redis without persistence and Celery's default early acks")
    args = parser.parse_args(argv)

    def progress(figure: SystemFigure) -> None:
        print(f"  … {figure.name}: {figure.per_s:.0f} delivered/s", file=sys.stderr, flush=True)

    result = measure_mixed(args.total, args.warmup, args.only, not args.celery_in_memory,
                           on_figure=progress)
    print("\n".join(result.lines()))


if __name__ == "__main__":
    main()
