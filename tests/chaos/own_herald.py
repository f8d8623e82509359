"""Scenarios that need a ``herald up`` of their own: overload, a full disk, and a whole restart.

The full-disk scenario needs the data dir on a small filesystem of its own (``tests.chaos.sandbox``
mounts a tmpfs there), so that filling it really makes every write fail with ENOSPC.
"""

from __future__ import annotations

import asyncio
import errno
import random
import time
import uuid
from pathlib import Path

import httpx

from tests.chaos.browser import BrowserFleet
from tests.chaos.load import LoadClient, Offer
from tests.chaos.peers import Peers
from tests.chaos.procs import HeraldProcess, RssSampler
from tests.chaos.tally import Tally, count, herald_counters

#: Growth of Herald's resident memory during overload that we still call bounded.
RSS_BOUND = 1024 * 2**20
#: How the whole-restart problem of Serve's 404s during start-up starts (tests pick it out).
SERVE_404 = "serve-404"


async def overload(herald: HeraldProcess, key: str, peers: Peers, *, seconds: float,
                   rate: float, deliver_rate: float) -> Tally:
    """Offer ``rate``/s (≈5× ``deliver_rate``, what the box is limited to) for ``seconds``:
    429 + Retry-After at the queue limit, memory bounded, every accepted one delivered."""
    tally = Tally("overload")
    started = time.monotonic()
    client = LoadClient(herald.base_url, key, retried=frozenset(), concurrency=64)
    baseline = herald.rss()
    sampler = RssSampler(herald.rss, 0.5).start()
    run = uuid.uuid4().hex[:6]

    def uid(_: str = "") -> str:
        return f"{run}-o{random.randrange(500)}"

    async def batches() -> None:  # 90% in batches of 10: one client can offer that much
        tasks = []
        for i in range(round(seconds * rate * 0.09)):
            await asyncio.sleep(max(0.0, started + i * 10 / (rate * 0.9) - time.monotonic()))
            tasks.append(asyncio.create_task(client.offer_batch("email", [uid() for _ in range(10)])))
        await asyncio.gather(*tasks)

    await asyncio.gather(batches(), client.steady(seconds, rate * 0.1, {"email": 1.0}, uid))
    accepted = sum(1 for o in client.offers if o.tag)
    await client.settle(client.offers, accepted / deliver_rate + 90)
    sampler.stop()
    count(tally, client, peers)
    tally.peak_rss = sampler.peak
    refused = client.answers.get(429, 0)
    tally.notes.append(f"offered {len(client.offers) / seconds:.0f}/s for {seconds:.0f} s against "
                       f"{deliver_rate:g}/s delivered: {refused} answered 429; RSS "
                       f"{baseline / 2**20:.0f} → peak {sampler.peak / 2**20:.0f} MiB")
    if not refused:
        tally.problems.append("the queue limit never answered 429")
    tally.notes.append(f"refusals: {sorted(client.errors_seen)[:2]}")
    if sampler.peak - baseline > RSS_BOUND:
        tally.problems.append(f"RSS grew by {(sampler.peak - baseline) / 2**20:.0f} MiB")
    await client.close()
    tally.seconds = time.monotonic() - started
    return tally


def _fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; bytes written."""
    written = 0
    chunk = b"\0" * 2**20
    with path.open("wb", buffering=0) as out:
        while True:
            try:
                written += out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return written
                chunk = chunk[: len(chunk) // 16 or 1]


async def disk_full(herald: HeraldProcess, key: str, peers: Peers, *, hold: float,
                    rate: float) -> tuple[Tally, list[Offer]]:
    """Fill the data dir's filesystem for ``hold`` s while notifications keep coming.

    Intake must answer 503 with a JSON error and ``Retry-After`` for what it could not write,
    never a 202 for it; when space is back it takes notifications again. The 202s are returned
    for ``whole_restart`` to check after a SIGKILL of everything: they were on disk.
    """
    tally = Tally("disk full")
    started = time.monotonic()
    client = LoadClient(herald.base_url, key, retried=frozenset())
    run = uuid.uuid4().hex[:6]
    pad = "x" * 20_000  # each notification needs fresh pages: the WAL must grow
    await client.offer("email", f"{run}-before")
    filler = herald.data_dir / "chaos-filler"
    filled = await asyncio.to_thread(_fill, filler)
    full_since = time.monotonic()
    while time.monotonic() - full_since < hold:
        await client.offer("email", f"{run}-{random.randrange(64)}", vars={"ref": run, "pad": pad})
        await asyncio.sleep(1 / rate)
    during = list(client.offers[1:])
    filler.unlink()
    freed = time.monotonic()
    resumed = None
    while time.monotonic() - freed < 120:
        offer = await client.offer("email", f"{run}-after-{random.randrange(64)}")
        if offer.tag:
            resumed = time.monotonic() - freed
            break
        await asyncio.sleep(0.5)
    answers = [a for o in during for a in o.answers]
    bodies = {o.answers[-1] for o in during}
    tally.notes.append(f"filled {filled / 2**20:.1f} MiB; {len(during)} offers while full "
                       f"answered {sorted(bodies)}; service took "
                       f"{'nothing' if resumed is None else f'{resumed:.1f} s'} to resume")
    if resumed is None:
        tally.problems.append("no notification accepted within 120 s of the disk having space")
    if not any(a == 503 for a in answers):
        tally.problems.append(f"no 503 while the disk was full: {sorted(set(answers))}")
    if set(answers) - {202, 503}:
        tally.problems.append(f"answers other than 202/503 while full: {sorted(set(answers))}")
    if client.errors_seen:
        tally.notes.append(f"503 bodies: {sorted(client.errors_seen)[:3]}")
    unclear = [e for e in client.errors_seen if "not JSON" in e]
    if unclear:
        tally.problems.append(f"503 without Herald's JSON error: {unclear[:3]}")
    await client.settle(client.offers, 120)
    count(tally, client, peers)
    tally.herald.update(await herald_counters(client))
    accepted = [o for o in client.offers if o.tag]
    await client.close()
    tally.seconds = time.monotonic() - started
    return tally, accepted


async def whole_restart(herald: HeraldProcess, key: str, peers: Peers, *, seconds: float,
                        rate: float, env_after: dict[str, str], also: list[Offer]) -> Tally:
    """Mixed load; halfway, SIGKILL ``herald up`` and every process it started, start it again
    on the same data dir. Every notification accepted (before, during, after, and ``also``)
    ends delivered."""
    tally = Tally("whole restart")
    started = time.monotonic()
    client = LoadClient(herald.base_url, key, retry_for=300)
    run = uuid.uuid4().hex[:6]
    fleet = BrowserFleet(client.http, [f"{run}-b{i}" for i in range(2)])
    await fleet.start()
    uids = {"email": [f"{run}-u{i}" for i in range(32)], "browser": list(fleet.users)}
    uids["sms"] = uids["fax"] = uids["email"]
    sampler = RssSampler(herald.rss).start()
    mix = {"email": 0.55, "sms": 0.2, "fax": 0.05, "browser": 0.2}
    load = asyncio.create_task(client.steady(seconds, rate, mix,
                                             lambda channel: random.choice(uids[channel])))
    await asyncio.sleep(seconds / 2)
    killed = await asyncio.to_thread(herald.kill_all)
    herald.env.update(env_after)
    herald.startup_answers.clear()
    probe = asyncio.create_task(_until_accepted(client, f"{run}-probe"))
    took = await asyncio.to_thread(herald.start)
    await load
    probed = await probe
    await client.settle(client.offers + also, 180)
    health_404 = herald.startup_answers.get(404, 0)
    tally.herald["serve_404"] = client.serve_404 + health_404
    if tally.herald["serve_404"]:
        tally.problems.append(
            f"{SERVE_404}: while Herald was starting again, Serve answered 404 to {client.serve_404} "
            f"POSTs (a client takes that as final; docs/api.md: 404 = unknown) and to {health_404} "
            f"GET /healthz polled every 5 ms: {sorted(e for e in client.errors_seen if '404' in e)};"
            f" a probe POSTing every 0.1 s from the kill on saw {probed}")
    await asyncio.sleep(1.0)
    sampler.stop()
    count(tally, client, peers, fleet)
    before = [o for o in also if o.tag]  # counted in their own scenario's row: only checked here
    recheck = count(Tally("accepted before"), client, peers, offers=before, client_stats=False)
    tally.lost += recheck.lost
    tally.problems += recheck.problems
    tally.kills = {"whole": 1}
    tally.peak_rss = sampler.peak
    tally.notes.append(f"SIGKILLed {killed} processes; up again in {took:.1f} s; "
                       f"{len(before)} notifications accepted earlier (full disk) re-checked")
    tally.herald.update(await herald_counters(client))
    await fleet.stop()
    await client.close()
    tally.seconds = time.monotonic() - started
    return tally


async def _until_accepted(client: LoadClient, uid: str) -> dict[int, int]:
    """POST one notification (one idempotency key) every 0.1 s until Herald takes it; how
    often each status answered meanwhile (0: no connection)."""
    offer = client.new_offer("email", uid)
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            response = await client.http.post("/v1/notifications", json=offer.payload)
            code = response.status_code
        except httpx.HTTPError:
            code = 0
        seen[code] = seen.get(code, 0) + 1
        if code in (200, 202):
            break
        if code == 404 and "json" not in response.headers.get("content-type", ""):
            client.errors_seen.add(f"404 not JSON: {response.text[:80]!r}")
            client.serve_404 += 1
        await asyncio.sleep(0.1)
    return seen
