"""Herald on a Ray cluster of three nodes on this machine, deployed with ``serve deploy``, its
shards on PostgreSQL: losing the node that runs them, and that node's disk, loses nothing.

A real PostgreSQL (``tests.support.postgres``, fsync on) listens on loopback; the deploy names it
(``HERALD_DATABASE_URL``). The head (``127.0.0.10``) offers no CPU and no ``herald_queue``: the
Serve controller and its HTTP proxy run there. Each shard asks ``HERALD_SHARD_CPUS`` (0.1), so
it can only land on worker A (``127.0.0.11``, 1 CPU), which joins before the deploy; so can
every channel actor, browser gateway included (they ask a sliver of CPU). Herald delivers
through both nodes; then worker B (``127.0.0.12``) joins, and while mixed email and SMS load
comes in over HTTP, worker A dies (SIGKILL of its processes only), with whatever else Ray put
there (the Supervisor, the rate limiter, the Intake replica ask no CPU and may land on either
node), and the Herald data dir it used is deleted while it is dead. Ray restarts the shards on
worker B; each takes its shard's lease over (a new epoch: whatever A's incarnation might still
write is fenced) and recovers from the database. Every accepted notification must still reach a
final state and its peer (the SMTP sink, the Twilio-compatible API); duplicates are counted: a
send in flight when its node died may go out again (at least once), so they may number at most
what was in flight.

With PostgreSQL a node's data dir holds nothing Herald needs: no queue files, no delivery-log
segments (the log is in the database until the rollup reads it), no secrets (API keys, the
browser-token secret, webhook secrets and the shard count are in ``herald_settings``); under
``serve deploy`` it is only made, empty, by the build task. So one data dir path serves every
node, as one ``runtime_env`` names it: on a real cluster each node has its own disk at that
path; here the nodes share it, and deleting it while A is dead takes B's too, which is the
stronger test. The test checks what A's data dir held before deleting it.

The browser gateway binds every interface (``HERALD_HOST=0.0.0.0``, as on a cluster) and
advertises its node's IP: a WebSocket client connects to the URL ``/v1/browser-endpoint``
gives, which names worker A, gets its messages and acks them; after the crash the same user
is sent to worker B, where Ray restarted the gateway.

Adapted to one machine: ``proxy_location: HeadOnly`` (proxies on two nodes of one machine
would both bind 127.0.0.1:port), and the ports, data dir, database and peers of the test. Nodes
use ``127.0.0.x`` addresses other than 127.0.0.1, which Ray would replace by the machine's own IP.
"""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
import yaml

from capture.smtp_sink import SmtpSink
from capture.twilio_api import CaptureTwilioApi
from launcher.runtime import LoopThread
from tests.cluster.ray_nodes import (
    RAY,
    SERVE,
    RayNode,
    free_ports,
    launch_worker,
    start_head,
)
from tests.support.payloads import email_payload
from tests.support.postgres import PostgresServer, pg_bin

ROOT = Path(__file__).resolve().parents[2]
KEY = "cluster-key-" + "c" * 20
OPERATOR = "cluster-operator-" + "o" * 16
TWILIO_SID, TWILIO_TOKEN = "AC" + "2" * 32, "u" * 32
HEAD_IP, A_IP, B_IP = "127.0.0.10", "127.0.0.11", "127.0.0.12"
#: Per channel actor: what it may hold in flight, so also what a crash may send twice.
CONCURRENCY = 16
POOLS = {"email": 2, "sms": 1, "browser": 1, "fax": 0, "webhook": 1}
SHARDS = 2
#: What a shard asks of its node: the head offers no CPU, so the shards land on a worker.
SHARD_CPUS = 0.1

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(RAY is None or SERVE is None, reason="the ray/serve CLI is absent"),
              pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is absent (make pg-deps)")]


class Cluster:
    """The test's nodes; ``kill_all`` stops exactly their processes."""

    def __init__(self, temp_dir: Path) -> None:
        self.temp_dir = temp_dir
        self.nodes: list[RayNode] = []

    def add(self, node: RayNode) -> RayNode:
        self.nodes.append(node)
        return node

    def kill_all(self) -> None:
        for node in reversed(self.nodes):
            node.kill()




@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    temp_dir = Path(tempfile.mkdtemp(prefix="hmn", dir="/tmp"))  # short: unix socket paths
    nodes = Cluster(temp_dir)
    try:
        yield nodes
    finally:
        nodes.kill_all()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _config(path: Path, data_dir: Path, database_url: str, port: int, browser_port: int,
            smtp_url: str, twilio_url: str) -> Path:
    """The repository's serve_config.yaml with this test's ports, data dir, database and peers."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"]["port"] = port
    config["proxy_location"] = "HeadOnly"
    app = config["applications"][0]
    app["runtime_env"]["env_vars"].update(
        HERALD_DATA_DIR=str(data_dir), HERALD_DATABASE_URL=database_url,
        HERALD_SHARD_CPUS=str(SHARD_CPUS), HERALD_PORT=str(port), HERALD_BROWSER_PORT=str(browser_port),
        HERALD_HOST="0.0.0.0", HERALD_PUBLIC_URL=f"http://127.0.0.1:{port}",
        HERALD_SMTP_URL=smtp_url, HERALD_API_KEYS=f"acme:{KEY}", HERALD_METRICS_TOKEN=OPERATOR,
        HERALD_TWILIO_ACCOUNT_SID=TWILIO_SID, HERALD_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        HERALD_TWILIO_BASE_URL=twilio_url, HERALD_TWILIO_FROM="+15005550006",
        HERALD_SHARDS=str(SHARDS), HERALD_POOLS=",".join(f"{k}={v}" for k, v in POOLS.items()),
        HERALD_CHANNEL_CONCURRENCY=str(CONCURRENCY), HERALD_LEASE_SECONDS="6",
        HERALD_RETRY_BASE_SECONDS="0.2", HERALD_RETRY_CAP_SECONDS="2",
        HERALD_ROLLUP_SECONDS="0")
    path.write_text(yaml.safe_dump(config))
    return path


def _actor_nodes(head: RayNode) -> dict[str, str]:
    """Live named actor → IP of its node, from Ray's state API (the dashboard)."""
    base = f"{head.dashboard}/api/v0"
    nodes = httpx.get(f"{base}/nodes", params={"limit": 100}, timeout=30).json()
    ips = {n["node_id"]: n["node_ip"] for n in nodes["data"]["result"]["result"]}
    actors = httpx.get(f"{base}/actors", params={"limit": 1000, "detail": "true"}, timeout=30).json()
    return {a["name"]: ips.get(a["node_id"], "?") for a in actors["data"]["result"]["result"]
            if a.get("name") and a["state"] == "ALIVE"}


def _wait_for(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (httpx.HTTPError, KeyError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.5)


def _browser_url(client: httpx.Client, uid: str) -> str:
    token = client.post("/v1/browser-tokens", json={"uid": uid}).json()["token"]

    def ask() -> str | None:
        answer = client.get("/v1/browser-endpoint", params={"token": token})
        return str(answer.json()["url"]) if answer.status_code == 200 else None  # 503: restarting

    return str(_wait_for("the browser endpoint", ask, 60))


def _notify_browser(client: httpx.Client, uid: str, count: int) -> list[str]:
    tags = []
    for i in range(count):
        payload = {"type": "CM_BROWSER", "user": {"uid": uid, "mq-uuid-btag": str(uuid.uuid4())},
                   "details": {"title": "T", "content": f"message {i}"}}
        answer = client.post("/v1/notifications", json=payload)
        assert answer.status_code == 202, answer.text
        tags.append(str(answer.json()["details"]["tag"]))
    return tags


async def _receive(url: str, count: int, timeout: float = 60) -> list[str]:
    """Tags of ``count`` frames, each acked, read from one connection to ``url``."""
    tags: list[str] = []
    async with websockets.connect(url, open_timeout=10) as ws:
        async with asyncio.timeout(timeout):
            while len(tags) < count:
                frame = json.loads(await ws.recv())
                if "tag" in frame:
                    tags.append(frame["tag"])
                    await ws.send(json.dumps({"ack": frame["tag"]}))
        await asyncio.sleep(0.5)  # let the acks reach the gateway
    return tags


def _browser_round(client: httpx.Client, uid: str, expect_ip: str) -> list[str]:
    """Connect ``uid`` through the advertised URL, which must name ``expect_ip``; send it
    three browser notifications; they arrive there, are acked, and end ``delivered``."""
    url = _browser_url(client, uid)
    assert urlsplit(url).hostname == expect_ip, url
    tags = _notify_browser(client, uid, 3)
    assert asyncio.run(_receive(url, 3)) == tags
    for tag in tags:
        status = client.get(f"/v1/notifications/{tag}", params={"wait": 20}).json()
        assert status["status"] == "delivered", status
    return tags


class Load:
    """Mixed email and SMS over HTTP from a few threads; a refused or failed POST is sent again
    with the same idempotency key until accepted, as a client would."""

    def __init__(self, base: str, total: int, threads: int = 4) -> None:
        self.base, self.total, self.threads = base, total, threads
        self.accepted: dict[str, tuple[str, str]] = {}  # tag → (channel, marker in the content)
        self.resent = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self._next = iter(range(total))

    def _payload(self, i: int, marker: str) -> dict[str, Any]:
        if i % 3 == 2:
            return {"type": "OTP_SMS", "user": {"uid": f"load-{i % 40}", "mq-uuid-btag": marker},
                    "details": {"to": f"+1415{i:07d}", "content": f"code {marker}"}}
        return email_payload(uid=f"load-{i % 40}", btag=marker, content=f"mail {marker}")

    def _send_all(self) -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=30) as client:
            while True:
                with self.lock:
                    i = next(self._next, None)
                if i is None:
                    return
                marker = str(uuid.uuid4())
                payload = self._payload(i, marker)
                for _ in range(120):
                    try:
                        answer = client.post("/v1/notifications", json=payload)
                        if answer.status_code in (200, 202):
                            with self.lock:
                                self.accepted[answer.json()["details"]["tag"]] = (
                                    payload["type"].rsplit("_", 1)[1].lower(), marker)
                            break
                        if answer.status_code < 429:  # refused for good: a bug
                            with self.lock:
                                self.errors.append(f"{answer.status_code} {answer.text}")
                            return
                    except httpx.HTTPError:
                        pass
                    with self.lock:
                        self.resent += 1
                    time.sleep(0.5)
                else:
                    with self.lock:
                        self.errors.append(f"notification {i} was never accepted")
                    return

    def start(self) -> list[threading.Thread]:
        workers = [threading.Thread(target=self._send_all, daemon=True) for _ in range(self.threads)]
        for worker in workers:
            worker.start()
        return workers


def _leases(postgres: PostgresServer) -> dict[str, tuple[str, int]]:
    """Lease name → (holder, epoch), from the database."""
    rows = postgres.sql("SELECT name, holder, epoch FROM herald_leases ORDER BY name")
    return {name: (holder, int(epoch))
            for name, holder, epoch in (row.split("|") for row in rows.splitlines())}


def _files(root: Path) -> list[str]:
    """The files under ``root`` (none if it is gone), relative to it."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _final_statuses(base: str, tags: list[str]) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {KEY}"}

    async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore, tag: str) -> str:
        async with gate:
            for _ in range(6):
                answer = await client.get(f"/v1/notifications/{tag}", params={"wait": 20})
                if answer.status_code == 200 and answer.json()["status"] in (
                        "sent", "delivered", "failed", "dead", "cancelled"):
                    break
            return str(answer.json().get("status"))

    async def every() -> dict[str, str]:
        gate = asyncio.Semaphore(20)
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=40) as client:
            found = await asyncio.gather(*(one(client, gate, tag) for tag in tags))
        return dict(zip(tags, found, strict=True))

    return asyncio.run(every())


def test_herald_delivers_across_nodes_and_survives_losing_one(
        cluster: Cluster, durable_postgres: PostgresServer, tmp_path: Path) -> None:
    postgres = durable_postgres
    started = time.monotonic()
    timings: dict[str, float] = {}
    head = cluster.add(start_head(cluster.temp_dir, num_cpus=0, ip=HEAD_IP))
    worker_a = cluster.add(launch_worker(head, A_IP, num_cpus=1)).wait_started()
    timings["nodes up"] = time.monotonic() - started
    port, browser_port = free_ports(2)
    data_dir = tmp_path / "data"
    loop = LoopThread()
    twilio = CaptureTwilioApi(TWILIO_SID, TWILIO_TOKEN, tmp_path / "outbox")
    loop.run(twilio.start())
    try:
        with SmtpSink() as sink:
            config = _config(tmp_path / "serve_config.yaml", data_dir, postgres.url, port,
                             browser_port, sink.url, twilio.base_url)
            deployed = head.run(str(SERVE), "deploy", str(config), "-a", str(head.dashboard),
                                timeout=240)
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            base = f"http://127.0.0.1:{port}"
            _wait_for("Herald under serve deploy",
                      lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 150)
            timings["deployed"] = time.monotonic() - started
            placed = _actor_nodes(head)
            channel_actors = {n: ip for n, ip in placed.items()
                              if n.startswith(("herald-email", "herald-sms", "herald-browser"))}
            assert set(channel_actors.values()) == {A_IP}, placed
            assert {ip for n, ip in placed.items() if n.startswith("herald-shard")} == {A_IP}, placed

            # Worker B joins while the browser round runs: where Ray restarts A's actors.
            worker_b = cluster.add(launch_worker(head, B_IP, num_cpus=1))
            client = httpx.Client(base_url=base, timeout=60,
                                  headers={"Authorization": f"Bearer {KEY}"})
            with client:
                _browser_round(client, "browser-user", A_IP)
                worker_b.wait_started()
                timings["browser on A, B joined"] = time.monotonic() - started

                load = Load(base, total=300)
                senders = load.start()
                _wait_for("a third of the load accepted", lambda: len(load.accepted) >= 100, 120)
                leases_before = _leases(postgres)
                killed = worker_a.crash()
                crashed_at = time.monotonic()
                # A's disk goes with it: what it held, then nothing.
                left_on_a = _files(data_dir)
                shutil.rmtree(data_dir)
                for sender in senders:
                    sender.join(timeout=240)
                assert not load.errors and len(load.accepted) == 300, load.errors[:5]
                timings["load accepted"] = time.monotonic() - started

                statuses = _final_statuses(base, list(load.accepted))
                timings["load final"] = time.monotonic() - started
                after = _actor_nodes(head)
                leases_after = _leases(postgres)
                _browser_round(client, "browser-user", B_IP)
                timings["browser on B"] = time.monotonic() - started
                metrics = client.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR}"}).text

            emails = [t for t, (channel, _) in load.accepted.items() if channel == "email"]
            texts = {marker for channel, marker in load.accepted.values() if channel == "sms"}
            sms_seen = collections.Counter(
                marker for m in twilio.messages for marker in texts if marker in m["body"])
            with sink.handler.lock:
                mail_seen = collections.Counter({t: sink.handler.by_tag[t] for t in emails})
    finally:
        loop.run(twilio.stop())
        loop.stop()

    not_final = {t: s for t, s in statuses.items() if s not in ("sent", "delivered")}
    lost_mail = [t for t in emails if mail_seen[t] == 0]
    lost_sms = [m for m in texts if sms_seen[m] == 0]
    twice_mail = sum(n - 1 for n in mail_seen.values() if n > 1)
    twice_sms = sum(n - 1 for n in sms_seen.values() if n > 1)
    counted = [line for line in metrics.splitlines()
               if line.startswith("herald_duplicate_sends_total")]
    print(f"\nnodes: head {HEAD_IP}, A {A_IP} (killed: {killed} processes), B {B_IP}; "
          f"accepted {len(load.accepted)} ({len(emails)} email, {len(texts)} sms), "
          f"client resends {load.resent}; not final {len(not_final)}, lost {len(lost_mail)} "
          f"email + {len(lost_sms)} sms, duplicates {twice_mail} email + {twice_sms} sms "
          f"({counted}); all final {started + timings['load final'] - crashed_at:.0f} s after the crash")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"leases before the crash {leases_before}, after {leases_after}; A's data dir held "
          f"{left_on_a}, after: {_files(data_dir) if data_dir.exists() else 'gone'}")
    for when, where in (("before", placed), ("after", after)):
        print(f"{when} the crash, off the head: "
              f"{sorted((n, ip) for n, ip in where.items() if ip != HEAD_IP)}")
    assert killed > 0
    # With PostgreSQL nothing a node keeps is needed: A's data dir held no file, and nothing
    # wrote one since.
    assert left_on_a == [] and _files(data_dir) == [], (left_on_a, _files(data_dir))
    assert not not_final, not_final
    assert not lost_mail and not lost_sms
    # At least once: only what was in flight on worker A when it died can have gone out twice.
    assert twice_mail <= POOLS["email"] * CONCURRENCY and twice_sms <= POOLS["sms"] * CONCURRENCY
    assert {ip for n, ip in after.items() if n.startswith(("herald-shard", "herald-email", "herald-sms",
                                                            "herald-browser"))} == {B_IP}, after
    # Each shard has a new owner (on B) with a new epoch: A's incarnation is fenced.
    for shard in range(SHARDS):
        name = f"shard-{shard}"
        (old_holder, old_epoch), (new_holder, new_epoch) = leases_before[name], leases_after[name]
        assert new_holder != old_holder and new_epoch > old_epoch, (leases_before, leases_after)


if __name__ == "__main__":  # pragma: no cover - run alone: python -m tests.cluster.test_multi_node
    sys.exit(pytest.main([__file__, "-q", "-s", "-p", "no:cacheprovider"]))
