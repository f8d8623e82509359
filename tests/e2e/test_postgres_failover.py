"""End to end on PostgreSQL (issue 18): a standby deployment takes over from an active one that
dies, and a Herald rides out the loss of its database primary (killed, or stopped: answering
nothing) to a promoted synchronous standby. Tried from outside, as a client, a load balancer and
an operator see it.

`herald up` subprocesses (each its own Ray) share one ``HERALD_DATABASE_URL`` of a real, durable
PostgreSQL; mixed email and SMS come in over HTTP only; what arrives is counted at the loopback
SMTP server and Twilio-compatible API that every deployment delivers to, so a notification is
counted once whoever sent it. The load and its verdict are ``tests.support.ordered_load``'s: a
client behind a load balancer, each user's notifications accepted in a known order.

Per-user order is observable: delivery is one send at a time per shard and channel (one actor
per pool, one send in flight per shard, nothing asap), so the order of arrival at a peer is the
order the shards leased in. A notification the lost owner had leased and never answered for
comes back when its lease expires (at least once: it may arrive twice, or after later ones);
the status history names those (``lease_expired``), and only those may be out of order or
duplicated.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from capture.smtp_sink import RecordingHandler, SmtpSink
from capture.twilio_api import CaptureTwilioApi
from launcher.runtime import LoopThread
from tests.support.herald_up import HeraldUp
from tests.support.ordered_load import PER_USER, USERS, Load, check, final_statuses, judge, notification
from tests.support.postgres import PostgresServer, pg_bin

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (make pg-deps)")]
KEY = "pg-e2e-key-" + "p" * 22
TWILIO_SID, TWILIO_TOKEN = "AC" + "3" * 32, "w" * 32
#: The contract: a standby answers 200 this soon after the active one stopped renewing, with
#: the default HERALD_SHARD_LEASE_SECONDS (15).
TAKEOVER_BOUND = 30.0
#: What a failure can catch leased and unanswered: 2 shards x 2 channels x (one send in flight
#: + outcomes waiting for their ack): each may come back once its lease expires.
IN_FLIGHT_BOUND = 8
SETTINGS = {
    "HERALD_API_KEYS": f"acme:{KEY}", "HERALD_SHARDS": "2",
    "HERALD_POOLS": "email=1,sms=1,browser=1,fax=0,webhook=0", "HERALD_POOL_MAX": "email=1,sms=1",
    "HERALD_CHANNEL_CONCURRENCY": "2",  # one send in flight per shard and channel
    "HERALD_LEASE_SECONDS": "6",  # what a dead owner had leased comes back soon
    "HERALD_RETRY_BASE_SECONDS": "0.2", "HERALD_RETRY_CAP_SECONDS": "2",
    "HERALD_ROLLUP_SECONDS": "0",
}


class SlowHandler(RecordingHandler):
    """An SMTP server that takes a little time per message, so a backlog builds up and a kill
    lands mid-load with sends in flight."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(0.03)
        return reply


@dataclass
class Peers:
    """The SMTP server and Twilio-compatible API every deployment of a test delivers to."""

    sink: SmtpSink
    twilio: CaptureTwilioApi
    loop: LoopThread

    def env(self) -> dict[str, str]:
        return {"HERALD_SMTP_URL": self.sink.url, "HERALD_TWILIO_ACCOUNT_SID": TWILIO_SID,
                "HERALD_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                "HERALD_TWILIO_BASE_URL": self.twilio.base_url,
                "HERALD_TWILIO_FROM": "+15005550006"}

    def arrivals(self, run: str) -> dict[str, list[str]]:
        """Idempotency keys of ``run`` per channel, in the order they arrived (repeats kept)."""
        with self.sink.handler.lock:
            mail = [str(m["Subject"]) for m in self.sink.handler.messages]
        texts = [found.group(1) for m in list(self.twilio.messages)
                 if (found := re.search(r"code (\S+)", str(m["body"])))]
        return {"email": [k for k in mail if k.startswith(run)],
                "sms": [k for k in texts if k.startswith(run)]}


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    loop = LoopThread()
    twilio = CaptureTwilioApi(TWILIO_SID, TWILIO_TOKEN, tmp_path_factory.mktemp("outbox"))
    loop.run(twilio.start())
    sink = SmtpSink(SlowHandler()).start()
    try:
        yield Peers(sink, twilio, loop)
    finally:
        sink.stop()
        loop.run(twilio.stop())
        loop.stop()




def deployment(data_dir: Path, database_url: str, peers: Peers) -> HeraldUp:
    up = HeraldUp.configure(data_dir, HERALD_DATABASE_URL=database_url, **SETTINGS, **peers.env())
    up.env["HERALD_DASHBOARD_PORT"] = "0"  # two Rays on two cores: no dashboards
    return up


def wait_for(what: str, done: Any, timeout: float, every: float = 0.2) -> float:
    """Seconds until ``done()`` is true; fails after ``timeout``."""
    started = time.monotonic()
    while not done():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - started


def health(base: str) -> tuple[int, str | None]:
    try:
        answer = httpx.get(f"{base}/healthz", timeout=3)
    except httpx.HTTPError:
        return 0, None
    try:
        return answer.status_code, answer.json().get("status")
    except ValueError:
        return answer.status_code, None


def one_active(ups: dict[str, HeraldUp], timeout: float = 15.0) -> tuple[str, str]:
    """The names of the active deployment and the standby, once ``/healthz`` says so: 200
    ``ok`` at one, 503 ``standby`` at the other (the winner's shards may wait a poll for its
    Supervisor's lease). Never both ``ok``."""
    deadline = time.monotonic() + timeout
    while True:
        said = {name: health(up.base_url) for name, up in ups.items()}
        assert sum(s == (200, "ok") for s in said.values()) < 2, f"both active: {said}"
        if sorted(said.values()) == [(200, "ok"), (503, "standby")]:
            return (next(n for n, s in said.items() if s[0] == 200),
                    next(n for n, s in said.items() if s[0] == 503))
        if time.monotonic() > deadline:
            pytest.fail(f"not one active and one standby within {timeout:.0f} s: {said}")
        time.sleep(0.2)


def mid_load(load: Load, peers: Peers, by: str) -> None:
    """Wait until a third of the load is accepted and deliveries are under way."""
    wait_for("a third of the load accepted, deliveries under way",
             lambda: len(load.accepted_by(by)) >= USERS * PER_USER // 3
             and sum(map(len, peers.arrivals(load.run).values())) >= 20, 120, every=0.05)


# -- the tests -----------------------------------------------------------------------------
def test_the_standby_deployment_takes_over_within_30_s_and_loses_nothing(
    durable_postgres: PostgresServer, peers: Peers, tmp_path: Path,
) -> None:
    url = durable_postgres.fresh_database("takeover")
    ups = {name: deployment(tmp_path / name, url, peers) for name in ("one", "two")}
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        # Both start at once: they race for the deployment lease, and exactly one wins.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            starting = {n: pool.submit(up.start, 240.0, None, frozenset({"ok", "standby"}))
                        for n, up in ups.items()}
            for future in starting.values():
                future.result()
        active_name, standby_name = one_active(ups)
        timings["both up"] = time.monotonic() - started
        active, standby = ups[active_name], ups[standby_name]
        assert 200 not in standby.start_answers["/healthz"], standby.start_answers
        headers = {"Authorization": f"Bearer {KEY}"}
        refused = httpx.post(f"{standby.base_url}/v1/notifications", headers=headers, timeout=10,
                             json=notification("refused", 0, 0).payload)
        assert refused.status_code == 503, refused.text

        load = Load(uuid.uuid4().hex[:8], KEY, (active_name, active.base_url)).start()
        mid_load(load, peers, active_name)
        killed = active.crash()
        killed_at = time.monotonic()
        load.route = (standby_name, standby.base_url)  # the balancer's health check moves
        timings["killed"] = killed_at - started
        took = wait_for("the standby answering 200",
                        lambda: health(standby.base_url)[0] == 200, 60)
        assert not active.survivors(killed), "processes of the killed deployment still run"
        load.join(timeout=180)
        timings["load accepted"] = time.monotonic() - started
        assert not load.errors, load.errors[:5]
        assert len(load.accepted) == USERS * PER_USER
        from_active = load.accepted_by(active_name)
        statuses = final_statuses(standby.base_url, KEY, [a.tag for a in load.accepted.values()])
        timings["all final"] = time.monotonic() - started

        # An idempotent retry at the standby of what the dead one accepted: the first tag.
        again = {}
        items = {n.key: n for n in load.sent}
        with httpx.Client(base_url=standby.base_url, headers=headers, timeout=30) as client:
            for key in sorted(from_active)[:10]:
                answer = client.post("/v1/notifications", json=items[key].payload)
                again[key] = (answer.status_code, answer.json())
        verdict = judge(load, statuses, peers.arrivals(load.run))
    finally:
        for up in ups.values():
            up.kill()

    print(f"\ntakeover: {len(killed)} processes of {active_name} killed "
          f"{timings['killed']:.0f} s in, after {len(from_active)} accepted; {standby_name} "
          f"answered 200 {took:.1f} s later; client retries {dict(load.refused)}; "
          f"{verdict.summary()}")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    assert took < TAKEOVER_BOUND
    for key, (code, body) in again.items():
        assert code == 200 and body.get("duplicate") is True, (key, code, body)
        assert body["details"]["tag"] == from_active[key].tag, (key, body)
    check(verdict, IN_FLIGHT_BOUND)


#: How the primary is lost: killed (its connections reset at once), or stopped (it answers
#: nothing and no error ever comes, as from a host cut off or a stalled disk: only Herald's own
#: timeouts get it off the old primary).
LOSSES = {"killed": PostgresServer.kill, "stopped": PostgresServer.freeze}


# The stopped primary takes a minute more (Herald's timeouts run out): `make test-long`.
@pytest.mark.parametrize("loss", ["killed", pytest.param("stopped", marks=pytest.mark.long)])
def test_a_database_failover_to_the_synchronous_standby_loses_nothing(
    peers: Peers, tmp_path: Path, loss: str,
) -> None:
    primary = PostgresServer.create(durable=True)
    replica: PostgresServer | None = None
    up: HeraldUp | None = None
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        replica = primary.standby(synchronous=True)
        url = (f"postgresql://herald:herald@127.0.0.1:{primary.port},127.0.0.1:{replica.port}"
               "/herald?target_session_attrs=read-write")
        up = deployment(tmp_path / "data", url, peers)
        up.start(240.0)
        timings["up"] = time.monotonic() - started
        load = Load(uuid.uuid4().hex[:8], KEY, ("herald", up.base_url)).start()
        mid_load(load, peers, "herald")
        before = len(load.accepted)
        LOSSES[loss](primary)
        timings[f"primary {loss}"] = time.monotonic() - started
        replica.promote()
        timings["standby promoted"] = time.monotonic() - started
        wait_for("a notification accepted after the failover",
                 lambda: len(load.accepted) > before + 10, 90)
        timings["accepting again"] = time.monotonic() - started
        load.join(timeout=180)
        timings["load accepted"] = time.monotonic() - started
        assert not load.errors, load.errors[:5]
        assert len(load.accepted) == USERS * PER_USER
        statuses = final_statuses(up.base_url, KEY, [a.tag for a in load.accepted.values()])
        timings["all final"] = time.monotonic() - started
        verdict = judge(load, statuses, peers.arrivals(load.run))
    finally:
        if up is not None:
            up.kill()
        if replica is not None:
            replica.destroy()
        primary.kill()  # stopped or not
        primary.destroy()

    print(f"\ndatabase failover: primary {loss} after {before} accepted; client retries "
          f"{dict(load.refused)}; {verdict.summary()}")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    check(verdict, IN_FLIGHT_BOUND)


