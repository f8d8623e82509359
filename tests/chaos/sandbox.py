"""The chaos scenarios that need a Herald of their own, run isolated: ``herald up`` on a tmpfs.

``python -m tests.chaos.sandbox [--long] [--json FILE]`` re-runs itself in private network and
mount namespaces (``tests.chaos.netns``), mounts a tmpfs for Herald's data dir, starts the
loopback peers and ``herald up``, and runs, in this order: a hanging provider, a full disk,
overload, a whole restart (SIGKILL of everything, then ``herald up`` again on the same data),
and hostile input (schema fuzzing, CR/LF, template abuse, a WebSocket flood). It prints the
table and writes every tally as JSON for the test that called it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO, TypeVar

from capture.net import free_port
from tests.chaos import netns
from tests.chaos.hostile import fuzz, hostile_payloads, websocket_flood
from tests.chaos.load import Offer
from tests.chaos.own_herald import disk_full, overload, whole_restart
from tests.chaos.peers import Peers
from tests.chaos.procs import KEEP_LOGS, HeraldProcess, RssSampler
from tests.chaos.report import details, row, table
from tests.chaos.scenarios import noisy_neighbour, provider_hang
from tests.chaos.tally import Tally

KEY = "chaos-key-" + "s" * 24
#: A second tenant: the noisy neighbour whose callbacks all fail (issue 17, item 3).
NOISY_KEY = "chaos-noisy-" + "n" * 24
ADMIN_KEY = "chaos-admin-" + "a" * 24
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    hang: float
    hang_messages: int
    disk_hold: float
    overload_seconds: float
    overload_rate: float
    deliver_rate: float
    queue_limit: int
    restart_seconds: float
    restart_rate: float
    fuzz_requests: int
    flood: int


SHORT = Sizes(hang=5, hang_messages=4, disk_hold=6, overload_seconds=5, overload_rate=100,
              deliver_rate=20, queue_limit=100, restart_seconds=10, restart_rate=10,
              fuzz_requests=300, flood=40)
LONG = Sizes(hang=10, hang_messages=20, disk_hold=15, overload_seconds=60, overload_rate=100,
             deliver_rate=20, queue_limit=500, restart_seconds=40, restart_rate=20,
             fuzz_requests=10_000, flood=200)


def herald_env(peers: Peers, sizes: Sizes) -> dict[str, str]:
    from herald.config import Settings

    admin = {"HERALD_ADMIN_KEY": ADMIN_KEY} if "admin_key" in Settings.model_fields else {}
    return {**admin,
        **peers.env(), "HERALD_API_KEYS": f"chaos:{KEY},noisy:{NOISY_KEY}",
        "HERALD_CALLBACK_ALLOW": "127.0.0.1/32", "HERALD_SHARDS": "2",
        "HERALD_BROWSER_PORT": str(free_port()), "HERALD_QUEUE_LIMIT": str(sizes.queue_limit),
        "HERALD_RATE_LIMITS": f"smtp={sizes.deliver_rate:g}", "HERALD_ATTEMPT_TIMEOUT": "4",
        "HERALD_LEASE_SECONDS": "6", "HERALD_RETRY_BASE_SECONDS": "0.2",
        "HERALD_RETRY_CAP_SECONDS": "2", "HERALD_BREAKER_COOLDOWN": "2",
        "HERALD_MAX_ATTEMPTS": "email=8,sms=10,fax=6,browser=6", "HERALD_ROLLUP_SECONDS": "0",
        "HERALD_BROWSER_ACK_TIMEOUT": "3", "HERALD_POOLS": "email=1,fax=1,webhook=1",
    }


def _measured(herald: HeraldProcess, run: Callable[[], T]) -> tuple[T, int]:
    sampler = RssSampler(herald.rss).start()
    try:
        return run(), sampler.peak
    finally:
        sampler.stop()


def _mount_tmpfs(where: Path, size: str) -> str | None:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(where)], capture_output=True, text=True, check=False)
    return None if mounted.returncode == 0 else mounted.stderr.strip()


def run_all(sizes: Sizes, say: TextIO | None = None) -> list[Tally]:
    """Every own-Herald scenario, in order, on one data dir (isolated: see the module doc);
    a line on ``say`` (default stderr) as each one ends."""
    tmp = Path(tempfile.mkdtemp(prefix="herald-chaos-"))
    data = tmp / "data"
    mount_error = _mount_tmpfs(data, "256m")
    peers = Peers.start(tmp / "outbox")
    herald = HeraldProcess(data, herald_env(peers, sizes), free_port())
    tallies: list[Tally] = []

    def done(tally: Tally) -> None:
        tallies.append(tally)
        progress(tally, say)

    try:
        herald.start()
        base = herald.base_url
        hang, peak = _measured(herald, lambda: asyncio.run(provider_hang(
            base, KEY, peers, hang=sizes.hang, messages=sizes.hang_messages)))
        hang.peak_rss = peak
        done(hang)
        held: list[Offer] = []
        if mount_error is None:
            (disk, held), peak = _measured(herald, lambda: asyncio.run(disk_full(
                herald, KEY, peers, hold=sizes.disk_hold, rate=4)))
            disk.peak_rss = peak
            done(disk)
        else:
            done(Tally("disk full", problems=[f"no tmpfs: {mount_error}"]))
        done(asyncio.run(overload(
            herald, KEY, peers, seconds=sizes.overload_seconds, rate=sizes.overload_rate,
            deliver_rate=sizes.deliver_rate)))
        done(asyncio.run(noisy_neighbour(
            base, NOISY_KEY, KEY, peers, limit=sizes.queue_limit, seconds=sizes.hang * 2,
            rate=1.0)))
        after = {"HERALD_QUEUE_LIMIT": "1000000", "HERALD_RATE_LIMITS": ""}
        done(asyncio.run(whole_restart(
            herald, KEY, peers, seconds=sizes.restart_seconds, rate=sizes.restart_rate,
            env_after=after, also=held)))
        fuzzed, peak = _measured(herald, lambda: fuzz(base, KEY, sizes.fuzz_requests,
                                                          admin_key=ADMIN_KEY))
        fuzzed.peak_rss = peak
        done(fuzzed)
        done(hostile_payloads(base, KEY))
        done(asyncio.run(websocket_flood(base, KEY, sizes.flood)))
    except Exception as exc:  # noqa: BLE001 - reported as a problem, with Herald's output
        tallies.append(Tally("sandbox", problems=[f"{type(exc).__name__}: {exc}",
                                                  "herald up said:\n" + herald.tail()]))
    finally:
        herald.stop()
        try:
            peers.stop()
        except (TimeoutError, OSError) as exc:
            print(f"stopping the peers: {exc!r}", file=sys.stderr)
        subprocess.run(["umount", "-l", str(data)], capture_output=True, check=False)
        if os.environ.get(KEEP_LOGS) != "1":
            shutil.rmtree(tmp, ignore_errors=True)
    return tallies


def progress(tally: Tally, say: TextIO | None = None) -> None:
    """One scenario's row as soon as it ends (a run cut short still shows what it found)."""
    print(f"[chaos] {tally.name} done: " + row(tally), file=say or sys.stderr, flush=True)
    for problem in tally.problems:
        print(f"[chaos]   PROBLEM: {problem[:500]}", file=say or sys.stderr, flush=True)


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` runs and kills what we started."""
    def stop(*_: object) -> None:
        raise SystemExit(143)

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.sandbox")
    parser.add_argument("--long", action="store_true", help="the long version's sizes")
    parser.add_argument("--json", type=Path, help="write the tallies here")
    args = parser.parse_args(argv)
    if not netns.isolated():
        why = netns.available()
        if why:
            print(f"cannot isolate the sandbox: {why}", file=sys.stderr)
            return 3
        return netns.run_isolated("tests.chaos.sandbox", sys.argv[1:] if argv is None else argv,
                                  timeout=900)
    quiet()
    stop_on_sigterm()
    started = time.monotonic()
    tallies = run_all(LONG if args.long else SHORT)
    print(table(tallies) + "\n\n" + details(tallies), flush=True)
    print(f"sandbox: {time.monotonic() - started:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps([t.to_dict() for t in tallies], indent=1))
    return 0


def quiet() -> None:
    """Keep our own console to the table: the libraries' request lines go."""
    for name in ("httpx", "mail.log", "aiohttp.access", "websockets", "hypothesis"):
        logging.getLogger(name).setLevel(logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
