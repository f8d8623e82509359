"""Herald on an autoscaling Ray cluster: a backlog grows the email pool past what the head can hold,
the autoscaler adds a node, channel actors run there, the backlog drains, and the node goes away.

The cluster is Ray's fake multi-node one, the mechanism behind ``ray.cluster_utils.AutoscalingCluster``:
``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config=…`` with the ``fake_multinode``
provider, whose "nodes" are raylets the autoscaler starts on this machine. AutoscalingCluster itself
cannot be used: this Ray's wheel lacks the ``fake_multi_node/example.yaml`` its constructor reads
(FileNotFoundError), and its ``start()``/``shutdown()`` run ``ray stop --force``, which kills every
Ray on the machine, and bind the default port 6379. So the test writes the same configuration
itself, with the provider's ``gcs_address`` pointing at a head whose every port was chosen free,
bound to 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes the autoscaler's nodes, and
Herald's driver, use the loopback address too), token auth off and a temp dir of its own;
tear-down kills only that head's processes, the autoscaler's nodes among them (``ray_nodes``).

Herald runs in a process of its own (the pytest process may already be a driver of the session's
local Ray), started as an operator would: ``HERALD_*`` variables with ``HERALD_RAY_ADDRESS`` naming
the cluster. A channel actor asks one CPU (``HERALD_CHANNEL_CPUS=1``) and the head has one, so only
the first email actor fits there; the SMTP server answers slowly so a backlog builds. What is
asserted is seen from the outside: Ray's state API (the head's dashboard), Herald's HTTP API and
``/metrics``, and the SMTP server's record. The pool may grow to one actor more than the cluster
can ever place: that one waits for good, and must neither be taken for hung (a restart) nor hold
up ``/metrics``, which asks every channel actor for its figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from capture.smtp_sink import RecordingHandler, SmtpSink
from jobs.ray_private import LOOPBACK_SWITCH
from tests.cluster.ray_nodes import BIN, OBJECT_STORE_BYTES, RAY, RayNode, _node_ports, free_ports
from tests.support.payloads import email_payload

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
KEY = "autoscale-key-" + "a" * 20
OPERATOR = "operator-" + "o" * 24
#: The head holds one channel actor (one CPU each), the one worker node the autoscaler may add
#: two more; the pool may grow to one more than that, an actor that waits for a node for good.
HEAD_CPUS, WORKER_CPUS, POOL_MAX = 1, 2, 4
#: A pool grows when more than this many emails per actor wait (HERALD_POOL_GROW_BACKLOG)...
GROW_BACKLOG = 100
#: ...and the backlog posted is enough for it to grow twice before the first actor drains it.
EMAILS = 600
#: The SMTP server takes this long per message, over at most two connections per actor.
SMTP_SECONDS = 0.2
#: Idle minutes before the autoscaler removes a worker node, and seconds before a pool shrinks.
IDLE_MINUTES, POOL_IDLE_SECONDS = 0.1, 2.0
#: Every email must have reached the SMTP server this long after Herald was up (a loaded 2-core
#: machine).
SCENARIO_SECONDS = 150.0
#: /metrics must answer within this, an actor waiting for a node or not (it used to wait for that
#: actor for as long as it waited for its node; a loaded machine makes an answer take seconds).
METRICS_SECONDS = 30.0

T = TypeVar("T")


# ---- the cluster ----------------------------------------------------------------------------

def autoscaling_config(gcs_address: str) -> dict[str, Any]:
    """What AutoscalingCluster generates from Ray's fake_multi_node/example.yaml, for a head on
    ``gcs_address``: a head that holds one channel actor, and one node type for delivery."""
    return {
        "cluster_name": "herald-autoscaling-test",
        "max_workers": 1,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     # Where the autoscaler's nodes join (the provider's default is port 6379).
                     "gcs_address": gcs_address},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": HEAD_CPUS}, "node_config": {},
                                 "max_workers": 0},
            "delivery": {"resources": {"CPU": WORKER_CPUS, "object_store_memory": OBJECT_STORE_BYTES},
                         "node_config": {}, "min_workers": 0, "max_workers": 1},
        },
        "head_node_type": "ray.head.default",
        "idle_timeout_minutes": IDLE_MINUTES,
        "upscaling_speed": 1.0,
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


@pytest.fixture
def cluster() -> Iterator[RayNode]:
    """The head of an autoscaling cluster; its ``kill()`` also ends the nodes the autoscaler
    started (they are its descendants, in its process group)."""
    if RAY is None:
        pytest.fail("the ray CLI is missing from the virtualenv")
    temp_dir = Path(tempfile.mkdtemp(prefix="has", dir="/tmp"))  # short: unix socket paths
    gcs, client, dash, autoscaler_metrics = free_ports(4)
    gcs_address = f"127.0.0.1:{gcs}"
    config = temp_dir / "autoscaling.json"
    config.write_text(json.dumps(autoscaling_config(gcs_address)))
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               # As AutoscalingCluster.start: the fake provider, an autoscaler that looks every
               # second (its metrics on a free port, not the fixed default).
               RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1",
               AUTOSCALER_METRIC_PORT=str(autoscaler_metrics),
               # The autoscaler starts its nodes with no IP given: loopback, not this host's IP.
               **{LOOPBACK_SWITCH: "0"},
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    argv = [str(RAY), "start", "--head", f"--autoscaling-config={config}",
            "--node-ip-address=127.0.0.1", f"--port={gcs}", f"--ray-client-server-port={client}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
            f"--num-cpus={HEAD_CPUS}", f"--temp-dir={temp_dir}", *_node_ports(set())]
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True, cwd=temp_dir)
    head = RayNode("127.0.0.1", gcs_address, env, process, temp_dir, f"http://127.0.0.1:{dash}")
    try:
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, out
        print(f"\nautoscaling cluster's head up in {time.monotonic() - started:.0f} s")
        yield head
    finally:
        head.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _nodes(head: RayNode) -> list[Any]:
    from ray.util.state import list_nodes

    return list(list_nodes(address=head.dashboard, limit=100, raise_on_missing_output=False))


def _alive_nodes(head: RayNode) -> list[Any]:
    return [n for n in _nodes(head) if n.state == "ALIVE"]


def _email_actors(head: RayNode) -> dict[str, Any]:
    """Email channel actors not dead, by name (``herald-email-1``)."""
    from ray.util.state import list_actors

    actors = list_actors(address=head.dashboard, limit=1000, detail=True,
                         filters=[("class_name", "=", "ChannelActor")],
                         raise_on_missing_output=False)
    return {a.name: a for a in actors
            if a.name and a.name.startswith("herald-email-") and a.state != "DEAD"}


# ---- Herald and its SMTP server -------------------------------------------------------------

class SlowHandler(RecordingHandler):
    """An SMTP server that takes ``SMTP_SECONDS`` per message, so a backlog builds."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(SMTP_SECONDS)
        return await super().handle_DATA(server, session, envelope)


@dataclass
class RunningHerald:
    base_url: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


#: Herald as ``herald up`` starts it (settings from HERALD_*), until the test kills it: the cluster
#: goes next, and every actor with it, so a graceful stop would only cost time.
_RUN_HERALD = """
import threading
from herald.config import load_settings
from launcher.runtime import Herald

Herald(load_settings()).start()
print("HERALD UP", flush=True)
threading.Event().wait()
"""


@pytest.fixture
def herald(cluster: RayNode, tmp_path: Path) -> Iterator[tuple[RunningHerald, SmtpSink]]:
    sink = SmtpSink()
    sink.handler = sink.controller.handler = SlowHandler()  # records as before, slowly
    sink.start()
    port, browser_port = free_ports(2)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("HERALD_", "RAY_ADDRESS"))}
    env.update(
        HERALD_RAY_ADDRESS=cluster.gcs, HERALD_DATA_DIR=str(tmp_path / "data"),
        HERALD_PORT=str(port), HERALD_BROWSER_PORT=str(browser_port),
        HERALD_API_KEYS=f"acme:{KEY}", HERALD_METRICS_TOKEN=OPERATOR, HERALD_SHARDS="1",
        HERALD_POOLS="email=1,sms=0,browser=0,fax=0,webhook=0", HERALD_POOL_MAX=f"email={POOL_MAX}",
        HERALD_CHANNEL_CPUS="1", HERALD_POOL_GROW_BACKLOG=str(GROW_BACKLOG),
        HERALD_POOL_IDLE_SECONDS=str(POOL_IDLE_SECONDS),
        HERALD_SMTP_URL=sink.url, HERALD_SMTP_POOL_SIZE="2", HERALD_CAPTURE="none",
        HERALD_SQLITE_SYNCHRONOUS="NORMAL", HERALD_ROLLUP_SECONDS="0", HERALD_DASHBOARD_PORT="0",
        RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0",
        # Else ray.init turns 127.0.0.1 into this host's address, where the head does not listen.
        **{LOOPBACK_SWITCH: "0"})
    log = tmp_path / "herald.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-c", _RUN_HERALD], env=env, cwd=ROOT,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
    running = RunningHerald(f"http://127.0.0.1:{port}", process, log)
    started = time.monotonic()
    try:
        up = _wait(lambda: "HERALD UP" in log.read_text(errors="replace") or process.poll() is not None,
                   180, "Herald to start", fail=False)
        assert up and process.poll() is None, f"Herald did not start:\n{running.output()}"
        print(f"\nHerald up on the cluster in {time.monotonic() - started:.0f} s")
        yield running, sink
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        sink.stop()


def _wait(condition: Callable[[], T], timeout: float, what: str, every: float = 0.5,
          fail: bool = True) -> T:
    """``condition()`` once it is true; after ``timeout`` an AssertionError naming ``what`` (or,
    with ``fail=False``, the last false answer)."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() > deadline:
            if result or not fail:
                return result
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# ---- what is seen from outside --------------------------------------------------------------

_OUTCOME = re.compile(r'^herald_channel_outcomes\{actor="(\d+)",channel="email",outcome="sent"\} (\S+)$',
                      re.MULTILINE)
_RESTARTS = re.compile(r'^herald_actor_restarts\{pool="email"\} (\S+)$', re.MULTILINE)
_COUNTER = re.compile(r"^(herald_\w+_total) (\S+)$", re.MULTILINE)


@dataclass
class Watch:
    """What the test saw while the scenario ran."""

    #: The slowest /metrics answer (it must not wait for an actor waiting for a node).
    slowest_metrics: float = 0.0
    #: /metrics answers while an email actor was waiting for a node.
    answers_while_pending: int = 0
    #: Emails sent per actor index, the most each was seen to have sent.
    sent_by_actor: dict[int, int] = field(default_factory=dict)
    restarts: float = 0.0

    def metrics(self, client: httpx.Client, pending: bool = False) -> str:
        started = time.monotonic()
        try:
            text = client.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR}"},
                              timeout=METRICS_SECONDS).text
        except httpx.TimeoutException:
            raise AssertionError(f"/metrics did not answer within {METRICS_SECONDS:.0f} s"
                                 f"{' while an email actor waited for a node' if pending else ''}"
                                 ) from None
        self.slowest_metrics = max(self.slowest_metrics, time.monotonic() - started)
        self.answers_while_pending += pending
        for index, sent in _OUTCOME.findall(text):
            self.sent_by_actor[int(index)] = max(self.sent_by_actor.get(int(index), 0),
                                                 int(float(sent)))
        found = _RESTARTS.search(text)
        self.restarts = float(found.group(1)) if found else 0.0
        return text


@pytest.fixture
def client(herald: tuple[RunningHerald, SmtpSink]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=herald[0].base_url, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


def test_a_backlog_grows_the_pool_onto_a_new_node_that_goes_away_when_idle(
    cluster: RayNode, herald: tuple[RunningHerald, SmtpSink], client: httpx.Client
) -> None:
    sink = herald[1]
    started = time.monotonic()
    head = _alive_nodes(cluster)
    assert len(head) == 1 and head[0].is_head_node, head
    head_id = head[0].node_id
    first = _email_actors(cluster)
    assert set(first) == {"herald-email-0"} and first["herald-email-0"].node_id == head_id

    watch = Watch()
    tags: list[str] = []
    for chunk in range(0, EMAILS, 300):  # distinct users: one user's emails would leave in turn
        batch = [email_payload(uid=1000 + i) for i in range(chunk, min(EMAILS, chunk + 300))]
        answer = client.post("/v1/notifications/batch", json={"notifications": batch})
        assert answer.status_code == 202, answer.text
        tags += [r["details"]["tag"] for r in answer.json()["results"]]
    assert len(set(tags)) == EMAILS

    # The pool grows to its maximum, past what the head holds; the autoscaler adds the one node
    # it may, two actors run there, and the last one waits for a node that will not come.
    def grown_onto_a_new_node() -> dict[str, Any] | None:
        actors = _email_actors(cluster)
        waiting = [a for a in actors.values() if a.state == "PENDING_CREATION"]
        workers = [n for n in _alive_nodes(cluster) if not n.is_head_node]
        watch.metrics(client, pending=bool(workers and waiting))
        placed = [a for a in actors.values() if a.state == "ALIVE" and a.node_id != head_id]
        return actors if len(placed) == WORKER_CPUS and len(waiting) == 1 else None

    actors = _wait(grown_onto_a_new_node, 120, f"{WORKER_CPUS} email actors alive on a new node "
                   "and one waiting", every=1.0)
    grew_at = time.monotonic() - started
    assert actors is not None
    assert len(actors) == POOL_MAX, actors
    nodes = _alive_nodes(cluster)
    assert len(nodes) == 2, nodes
    worker = next(n for n in nodes if not n.is_head_node)
    assert worker.resources_total.get("CPU") == WORKER_CPUS
    elsewhere = [a for a in actors.values() if a.node_id == worker.node_id]
    assert len(elsewhere) == WORKER_CPUS and all(a.state == "ALIVE" for a in elsewhere), actors
    assert actors["herald-email-0"].node_id == head_id

    # Every email reaches the SMTP server exactly once, some sent by the actors on the new node.
    def delivered() -> bool:
        waiting = any(a.state == "PENDING_CREATION" for a in _email_actors(cluster).values())
        watch.metrics(client, pending=waiting)
        with sink.handler.lock:
            return sum(sink.handler.by_tag.values()) >= EMAILS

    _wait(delivered, SCENARIO_SECONDS - (time.monotonic() - started), "every email", every=1.0)
    drained_at = time.monotonic() - started
    with sink.handler.lock:
        counts = dict(sink.handler.by_tag)
    assert set(counts) == set(tags), "lost or unknown emails"
    assert [t for t, n in counts.items() if n != 1] == [], "emails delivered more than once"
    new_indexes = {int(a.name.rsplit("-", 1)[1]) for a in elsewhere}
    assert all(watch.sent_by_actor.get(i, 0) > 0 for i in new_indexes), watch.sent_by_actor

    # Idle: the pool shrinks back to the head's actor, and the autoscaler removes the node.
    _wait(lambda: set(_email_actors(cluster)) == {"herald-email-0"}, 60, "the pool to shrink",
          every=1.0)
    _wait(lambda: [n.node_id for n in _alive_nodes(cluster)] == [head_id], 90,
          "the idle node to be removed", every=1.0)
    removed_at = time.monotonic() - started
    assert {n.node_id: n.state for n in _nodes(cluster)}[worker.node_id] == "DEAD"
    # The actor that waited for a node was never taken for hung (no restarts), nor did /metrics
    # (which asks every channel actor for its figures) wait for it.
    text = watch.metrics(client)
    assert watch.restarts == 0, text
    assert watch.answers_while_pending > 0
    # Each email's state is final, sent once, and its send was never repeated.
    counters = dict(_COUNTER.findall(text))
    assert (float(counters["herald_sent_total"]), float(counters["herald_duplicate_sends_total"]),
            float(counters["herald_lease_expired_total"])) == (EMAILS, 0, 0), counters
    depth = client.get("/v1/queue").json()["shards"]
    assert all(n == 0 for shard in depth for states in shard["depth"].values()
               for n in states.values()), depth
    print(f"autoscaling: grew onto a new node at {grew_at:.0f} s, {EMAILS} emails delivered at "
          f"{drained_at:.0f} s, node removed at {removed_at:.0f} s; sent per actor "
          f"{dict(sorted(watch.sent_by_actor.items()))}; slowest /metrics "
          f"{watch.slowest_metrics:.1f} s ({watch.answers_while_pending} while an actor waited)")
