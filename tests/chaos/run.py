"""``make chaos``: the long fault tests, about ten minutes; prints the table docs/performance.md quotes.

Runs isolated (``tests.chaos.netns``: loopback only). First a Herald in this process, on a Ray
of its own, takes steady mixed load while its processes are SIGKILLed at random (queue shards,
channel actors, the Supervisor, Serve's replica and proxy), then provider outages, then a
shard whose SQLite file another connection keeps write-locked for 60 s across its restart; then
``tests.chaos.sandbox`` runs the scenarios that need a ``herald up`` of their own (a hanging
provider, a full disk, overload, a whole restart, hostile input). Exit status 1 if anything
was lost or any other promise broke (listed under the table).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from capture.net import free_port
from tests.chaos import netns, sandbox
from tests.chaos.peers import Peers
from tests.chaos.procs import RssSampler, tree_rss
from tests.chaos.report import details, table
from tests.chaos.scenarios import locked_shard, process_kills, provider_outages
from tests.chaos.tally import Tally

KEY = "chaos-key-" + "r" * 24
KILL_SECONDS, KILL_RATE, KILL_EVERY = 75.0, 30.0, 5.0


@contextlib.contextmanager
def console_to(log: Path) -> Iterator[TextIO]:
    """Send everything written to fds 1 and 2 (Ray's and Herald's logs) to ``log``; yield a
    stream on the real stdout for our own lines."""
    saved = os.dup(1)
    out = os.fdopen(os.dup(saved), "w", buffering=1)
    with log.open("ab") as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield out
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved, 1)
            os.dup2(saved, 2)
            os.close(saved)
            out.close()


def in_process(tmp: Path, say: TextIO) -> list[Tally]:
    """Kills and outages against a Herald started here (its Ray is this process's children)."""
    import psutil  # Ray's bundled one: tests.chaos.procs imported ray first

    from herald.config import Settings
    from launcher.runtime import Herald

    peers = Peers.start(tmp / "outbox")
    settings = Settings(
        port=free_port(), data_dir=tmp / "in-process", shards=4, api_keys={KEY: "chaos"},
        pools={"email": 2, "sms": 1, "browser": 1, "fax": 1, "webhook": 1},
        browser_port=free_port(), lease_seconds=6.0, attempt_timeout=12.0,
        retry_base_seconds=0.2, retry_cap_seconds=2.0, breaker_threshold=3, breaker_cooldown=2.0,
        browser_ack_timeout=3.0, rollup_seconds=0,
        max_attempts={"email": 8, "sms": 10, "browser": 6, "fax": 6, "webhook": 8},
        **peers.settings())
    herald = Herald(settings).start()
    me = psutil.Process()
    sampler = RssSampler(lambda: tree_rss([me], include_roots=False)).start()
    base = f"http://127.0.0.1:{settings.port}"
    tallies = []
    try:
        say.write("[chaos] process kills…\n")
        sampler.peak = 0
        kills = asyncio.run(process_kills(base, KEY, peers, duration=KILL_SECONDS,
                                          rate=KILL_RATE, kill_every=KILL_EVERY, browsers=6))
        kills.peak_rss = sampler.peak
        tallies.append(kills)
        sandbox.progress(kills, say)
        say.write("[chaos] provider outages…\n")
        sampler.peak = 0
        outages = asyncio.run(provider_outages(base, KEY, peers, outage=8.0, per_phase=40,
                                               slow_messages=20))
        outages.peak_rss = sampler.peak
        tallies.append(outages)
        sandbox.progress(outages, say)
        say.write("[chaos] a shard's database locked for 60 s…\n")
        sampler.peak = 0
        locked = asyncio.run(locked_shard(base, KEY, peers, data_dir=settings.data_dir,
                                          lock_for=60.0, rate=KILL_RATE))
        locked.peak_rss = sampler.peak
        tallies.append(locked)
        sandbox.progress(locked, say)
    finally:
        sampler.stop()
        herald.stop(timeout=10)
        peers.stop()
        for done in ("in-process", "outbox"):  # the log stays
            shutil.rmtree(tmp / done, ignore_errors=True)
    return tallies


def main() -> int:
    if not netns.isolated():
        why = netns.available()
        if why:
            print(f"make chaos cannot isolate its network: {why}", file=sys.stderr)
            return 3
        return netns.run_isolated("tests.chaos.run", sys.argv[1:], timeout=1800)
    sandbox.quiet()
    sandbox.stop_on_sigterm()
    tmp = Path(tempfile.mkdtemp(prefix="herald-chaos-run-"))
    log = tmp / "chaos.log"
    started = time.monotonic()
    with console_to(log) as say:
        say.write(f"[chaos] {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
                  f"logs in {log}\n")
        tallies = in_process(tmp, say)
        say.write("[chaos] own-Herald scenarios (sandbox)…\n")
        tallies += sandbox.run_all(sandbox.LONG, say)
    print(table(tallies))
    print()
    print(details(tallies))
    print(f"\n{os.cpu_count()} cores; {time.monotonic() - started:.0f} s in all; logs in {log}")
    broken = [p for t in tallies for p in t.problems] + [f"{t.name}: lost {t.lost}"
                                                          for t in tallies if t.lost]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
