"""Process kills under mixed load, provider outages, a shard whose SQLite file is locked: scenarios
run against a Herald in this Ray.

Both need the Ray that runs Herald to be the one this process is connected to (the test
session's, or the one ``tests.chaos.run`` starts), and the Herald's peers as ``Peers``.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import ray

from herald.actor_names import NAMESPACE
from herald.config import Settings
from herald.sharding import host_name
from tests.chaos.browser import BrowserFleet
from tests.chaos.kills import KINDS, Killer
from tests.chaos.load import LoadClient, Offer
from tests.chaos.peers import Peers
from tests.chaos.tally import Tally, count, herald_counters

MIX = {"email": 0.5, "sms": 0.2, "fax": 0.05, "browser": 0.25}
#: Kills per round of the long run: every kind, shards and channel actors twice (a killed
#: proxy costs Serve ~30 s to replace: 3 failed health checks 10 s apart).
WEIGHTS = {"queue": 2, "channel": 2, "supervisor": 1, "replica": 1, "proxy": 1}


def _uids(run: str, browsers: Sequence[str]) -> dict[str, list[str]]:
    plain = [f"{run}-u{i}" for i in range(64)]
    return {"email": plain, "sms": plain, "fax": plain, "browser": list(browsers)}


async def process_kills(base_url: str, key: str, peers: Peers, *, duration: float, rate: float,
                        kill_every: float, cycle: Sequence[str] | None = None, browsers: int = 4,
                        settle: float = 180.0, seed: int | None = None) -> Tally:
    """Steady mixed load while SIGKILLing Herald's processes; then every accepted tag is final.

    ``cycle`` kills those kinds in order, once each (the short version); without it, every
    ``kill_every`` seconds for the whole ``duration``, rounds of ``WEIGHTS`` in random order.
    """
    tally = Tally("process kills")
    started = time.monotonic()
    run = f"k{uuid.uuid4().hex[:6]}"
    client = LoadClient(base_url, key)
    fleet = BrowserFleet(client.http, [f"{run}-b{i}" for i in range(browsers)])
    await fleet.start()
    rng = random.Random(seed)
    killer = Killer(seed)
    uids = _uids(run, list(fleet.users))
    stop = asyncio.Event()

    def rounds() -> Iterator[str]:  # every kind in each round, shards and channels more often
        while True:
            order = [kind for kind, weight in WEIGHTS.items() for _ in range(weight)]
            rng.shuffle(order)
            yield from order

    async def inject() -> None:
        kinds = iter(cycle) if cycle else rounds()
        await asyncio.sleep(kill_every / 2)
        for kind in kinds:
            if stop.is_set():
                return
            await asyncio.to_thread(killer.kill, kind)
            try:
                await asyncio.wait_for(stop.wait(), kill_every)
            except TimeoutError:
                pass

    injector = asyncio.create_task(inject())
    asyncio.get_running_loop().call_later(duration, stop.set)  # kills while offering, only
    await client.steady(duration, rate, MIX, lambda channel: rng.choice(uids[channel]))
    stop.set()
    await injector
    await client.wait_healthy(120)
    await client.settle(client.offers, settle)
    await asyncio.sleep(1.0)  # the last acks and frames
    count(tally, client, peers, fleet, errors_are_problems=False)
    if client.server_errors:
        tally.notes.append(f"answers from Serve while its processes died: {client.server_errors[:3]}")
    tally.herald["serve_404"] = client.serve_404
    if client.serve_404:
        tally.notes.append(f"{client.serve_404} POSTs answered 404 by Serve itself (no route yet: "
                           "a restarted proxy or replica), retried here; a client would drop them")
    tally.kills = {kind: killer.kills.get(kind, 0) for kind in KINDS}
    tally.herald.update(await herald_counters(client))
    tally.notes.append("kills: " + ", ".join(f"{k} {n}" for k, n, _ in killer.log))
    await fleet.stop()
    await client.close()
    tally.seconds = time.monotonic() - started
    return tally


async def _offer_many(client: LoadClient, channel: str, count_: int, run: str,
                      **details: object) -> list[Offer]:
    return list(await asyncio.gather(*(client.offer(channel, f"{run}-{channel}-{i}", **details)
                                       for i in range(count_))))


async def provider_outages(base_url: str, key: str, peers: Peers, *, outage: float,
                           per_phase: int, slow_messages: int, settle: float = 120.0) -> Tally:
    """SMTP refusing connections, Twilio 500 / 429 + Retry-After / failover, a 10 s provider,
    and SMTP replies in odd encodings.

    Everything except the odd-encoding and dead-letter probes must end sent/delivered, nothing
    may stay ``sending``, and a slow but finite provider must cause no lease expiry and no
    duplicate.
    """
    tally = Tally("provider outages")
    started = time.monotonic()
    run = f"o{uuid.uuid4().hex[:6]}"
    client = LoadClient(base_url, key)
    twilio, backup = peers.twilios()
    before = await herald_counters(client)
    slow: list[Offer] = []
    probes: dict[str, Offer] = {}

    async def email_side() -> None:
        peers.smtp_down()  # connections refused
        offers = await _offer_many(client, "email", per_phase, run + "a")
        await asyncio.sleep(outage)
        peers.smtp_up()
        await client.settle(offers, settle)
        # Odd encodings: a permanent and a transient refusal, both in bytes that are not UTF-8.
        bad, busy, fine = (f"{run}-{n}@example.com" for n in ("bad", "busy", "fine"))
        peers.sink.handler.refuse[bad] = b"550 5.1.1 <\xff\xfe> unknown \xe9\xe8 user \xc3\x28"
        peers.sink.handler.refuse[busy] = b"451 4.7.1 greylisted \x80\x81 try later \xed\xa0\x80"
        for name, to in (("odd-550", bad), ("odd-451", busy), ("after-odd", fine)):
            probes[name] = await client.offer("email", f"{run}-odd", to=to)

    async def sms_side() -> None:
        end = time.monotonic() + outage
        twilio.fail_until(end, status=500)
        backup.fail_until(end, status=429, retry_after=1.0)
        offers = await _offer_many(client, "sms", per_phase, run + "b")
        await asyncio.sleep(outage)
        twilio.fail_until(time.monotonic() + outage, status=429, retry_after=1.0)  # failover
        offers += await _offer_many(client, "sms", per_phase, run + "c")
        await asyncio.sleep(outage)
        await client.settle(offers, settle)
        # Slow but finite: 10 s per message, longer than the lease; renewed, never expired.
        expired = (await herald_counters(client))["lease_expired"]
        for api in (twilio, backup):
            api.delay_until(time.monotonic() + 3.0, 10.0)
        slow.extend(await _offer_many(client, "sms", slow_messages, run + "s"))
        await client.settle(slow, settle)
        tally.herald["lease_expired_while_slow"] = (
            (await herald_counters(client))["lease_expired"] - expired)

    try:
        await asyncio.gather(email_side(), sms_side())
    finally:
        peers.calm()
    special = {o.tag for o in probes.values()}
    await client.settle(client.offers, settle)
    plain = [o for o in client.offers if o.tag not in special]
    count(tally, client, peers, offers=plain)
    count(Tally("probes"), client, peers, offers=list(probes.values()), expect_done=False)
    _check_probes(tally, probes)
    _check_slow(tally, slow, peers)
    after = await herald_counters(client)
    tally.herald.update({k: after[k] - before.get(k, 0.0) for k in after})
    retried = sum(1 for o in plain if (o.status or {}).get("attempts", 0) > 1)
    carriers = {h.get("provider") for o in plain if o.channel == "sms"
                for h in (o.status or {}).get("history", []) if h.get("outcome") == "sent"}
    tally.notes.append(f"{retried} of {len(plain)} needed more than one attempt; "
                       f"SMS carried by {sorted(c for c in carriers if c)}")
    if retried == 0:
        tally.problems.append("no notification was retried: the outages did not bite")
    await client.close()
    tally.seconds = time.monotonic() - started
    return tally


def _check_probes(tally: Tally, probes: dict[str, Offer]) -> None:
    wanted = {"odd-550": {"failed"}, "odd-451": {"dead"}, "after-odd": {"sent"}}
    for name, offer in probes.items():
        if offer.state not in wanted[name]:
            history = (offer.status or {}).get("history", [])[-2:]
            tally.problems.append(f"{name}: {offer.tag} is {offer.state} (answers "
                                  f"{offer.answers}), wanted {wanted[name]}: {history}")
    errors = [h.get("error") for o in probes.values()
              for h in (o.status or {}).get("history", []) if h.get("error")]
    tally.notes.append(f"odd-encoding errors as stored: {errors[:2]}")


def _check_slow(tally: Tally, slow: list[Offer], peers: Peers) -> None:
    received = peers.received()["sms"]
    twice = [o.tag for o in slow if received[o.marker] > 1]
    if twice:
        tally.problems.append(f"a slow provider caused duplicates: {twice}")
    if tally.herald.get("lease_expired_while_slow"):
        tally.problems.append(
            f"{tally.herald['lease_expired_while_slow']:g} leases expired while a provider was "
            "slow but answering (the heartbeat should have renewed them)")
    took = [t for o in slow if (t := o.sent_after()) is not None]
    tally.notes.append(f"slow provider: {len(slow)} SMS, each sent after "
                       f"{min(took, default=0):.1f}-{max(took, default=0):.1f} s, "
                       f"{len(twice)} twice")


async def provider_hang(base_url: str, key: str, peers: Peers, *, hang: float, messages: int,
                        settle: float = 120.0) -> Tally:
    """Both Twilio APIs accept the connection and never answer for ``hang`` seconds: each
    attempt ends at Herald's per-attempt deadline (``HERALD_ATTEMPT_TIMEOUT``, history code
    ``deadline``) and is retried; once they answer again, everything is delivered."""
    tally = Tally("provider hang")
    started = time.monotonic()
    client = LoadClient(base_url, key)
    for api in peers.twilios():
        api.delay_until(time.monotonic() + hang, 3600.0)
    try:
        offers = await _offer_many(client, "sms", messages, f"h{uuid.uuid4().hex[:6]}")
        await asyncio.sleep(hang)
    finally:
        peers.calm()
    await client.settle(offers, settle)
    count(tally, client, peers)
    codes = [h.get("code") for o in offers for h in (o.status or {}).get("history", [])]
    tally.notes.append(f"attempt outcomes while hanging: {sorted(set(map(str, codes)))}")
    if "deadline" not in codes:
        tally.problems.append(f"no attempt ended at the per-attempt deadline: codes {codes[:10]}")
    await client.close()
    tally.seconds = time.monotonic() - started
    return tally


async def locked_shard(base_url: str, key: str, peers: Peers, *, data_dir: Path, lock_for: float,
                       rate: float, shard: int = 0, settle: float = 180.0,
                       seed: int | None = None) -> Tally:
    """Mixed load; mid-load another connection holds shard ``shard``'s SQLite write lock for
    ``lock_for`` s and the shard is restarted meanwhile, so its start meets the lock (as after
    a crash beside a backup or a long ``sqlite3`` session). ``/healthz`` must say it is down;
    once the lock goes the shard must come back by itself; nothing accepted is lost."""
    tally = Tally("locked shard")
    started = time.monotonic()
    run = f"l{uuid.uuid4().hex[:6]}"
    rng = random.Random(seed)
    client = LoadClient(base_url, key)
    uids = [f"{run}-u{i}" for i in range(64)]
    seen_down: list[str] = []

    async def lock() -> None:
        await asyncio.sleep(3.0)  # load first
        db = sqlite3.connect(data_dir / "queue" / f"shard-{shard}.db", isolation_level=None,
                             timeout=60, check_same_thread=False)
        try:
            await asyncio.to_thread(db.execute, "BEGIN IMMEDIATE")
            handle = await asyncio.to_thread(  # the process hosting it (with every other shard)
                ray.get_actor, host_name(shard, Settings().shards_per_process), NAMESPACE)
            ray.kill(handle, no_restart=False)  # Ray starts it again: that start meets the lock
            ends = time.monotonic() + lock_for
            while time.monotonic() < ends:
                answer = await client.http.get("/healthz", timeout=5.0)
                if answer.status_code == 503:
                    seen_down.extend([str(d.get("reason")) for d in answer.json().get("down", [])
                                      if d.get("shard") == shard][:1])
                await asyncio.sleep(0.5)
        finally:
            db.execute("ROLLBACK")
            db.close()

    locker = asyncio.create_task(lock())
    await client.steady(lock_for + 10.0, rate, {"email": 0.6, "sms": 0.3, "fax": 0.1},
                        lambda _: rng.choice(uids))
    await locker
    back = await client.wait_healthy(120)
    await client.settle(client.offers, settle)
    await asyncio.sleep(1.0)
    count(tally, client, peers, errors_are_problems=False)
    if not seen_down:
        tally.problems.append(f"/healthz never said shard {shard} was down while its file was locked")
    tally.notes.append(f"shard {shard} locked {lock_for:g} s; /healthz said down {len(seen_down)}"
                       f" times ({seen_down[:1]}); /healthz 200 again {back:.1f} s after the load ended")
    tally.herald.update(await herald_counters(client))
    await client.close()
    tally.seconds = time.monotonic() - started
    return tally


async def noisy_neighbour(base_url: str, noisy_key: str, steady_key: str, peers: Peers, *,
                          limit: int, seconds: float, rate: float) -> Tally:
    """A tenant whose callbacks all fail beside one that keeps sending (issue 17, item 3).

    ``noisy`` floods email with a ``callback_url`` at a closed loopback port (the Herald must
    allow 127.0.0.1 callbacks) until the queue limit answers 429: its sent emails become
    callbacks that wait on an open breaker. Meanwhile ``steady`` offers ``rate``/s for
    ``seconds`` — far below its fair share — and must never see a 429.
    """
    from capture.net import free_port

    tally = Tally("noisy neighbour")
    started = time.monotonic()
    run = f"n{uuid.uuid4().hex[:6]}"
    noisy = LoadClient(base_url, noisy_key, retried=frozenset())
    steady = LoadClient(base_url, steady_key, retried=frozenset())
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there

    async def flood() -> None:
        for i in range(0, 4 * limit, 20):
            batch = await noisy.offer_batch("email", [f"{run}-a{i + j}" for j in range(20)],
                                            callback_url=dead)
            if any(429 in o.answers for o in batch):
                return

    await flood()  # the queue is full of the noisy tenant's work
    await asyncio.gather(flood(), steady.steady(seconds, rate, {"email": 1.0},
                                                lambda _: f"{run}-b{random.randrange(50)}"))
    await steady.settle(steady.offers, 120)
    count(tally, steady, peers)
    refused = steady.answers.get(429, 0)
    tally.notes.append(f"noisy tenant: {sum(1 for o in noisy.offers if o.tag)} accepted, "
                       f"{noisy.answers.get(429, 0)} answered 429; steady tenant: "
                       f"{len(steady.offers)} offered, {refused} answered 429")
    if not noisy.answers.get(429):
        tally.problems.append("the noisy tenant never reached the queue limit")
    if refused:
        tally.problems.append(f"the steady tenant, within its share, got {refused} 429s: "
                              f"{sorted(steady.errors_seen)[:2]}")
    await noisy.close()
    await steady.close()
    tally.seconds = time.monotonic() - started
    return tally
