"""Ray nodes of a test's own cluster on this machine: ``ray start --head`` and ``ray start
--address=…`` with every port chosen free, token auth off, a temp dir of the test's own.

Each ``ray start`` runs in a session (and process group) of its own, which the node's daemons
inherit; the workers a raylet starts get groups of their own and are found as its descendants.
``kill`` and ``crash`` signal exactly those processes: never ``ray stop``, which stops every Ray
on the machine. Every node listens on a loopback address (``127.0.0.x``), so several nodes on
one machine have addresses of their own, as on a real cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
RAY = shutil.which("ray", path=str(BIN)) or shutil.which("ray")
SERVE = shutil.which("serve", path=str(BIN)) or shutil.which("serve")
#: Small object stores: the nodes share this machine's memory.
OBJECT_STORE_BYTES = 150 * 1024 * 1024
#: How long one ``ray start`` may take: minutes when the machine is loaded.
START_SECONDS = 240.0
#: The head's GCS notices a dead node after about period × threshold (Ray's default ≈ 15 s+).
FAST_DEATH_DETECTION = {"RAY_health_check_initial_delay_ms": "1000",
                        "RAY_health_check_period_ms": "1000",
                        "RAY_health_check_timeout_ms": "1000",
                        "RAY_health_check_failure_threshold": "3"}


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports free now, all different (held open together while chosen)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _worker_ports(taken: set[int], width: int = 48) -> tuple[int, int]:
    """A range of ports for one node's workers, free now and apart from ``taken`` (the default
    range is shared with every other Ray on the machine)."""
    for start in range(30_000 + os.getpid() % 50 * 400, 60_000, width):
        if any(start <= port < start + width for port in taken):
            continue
        try:
            with socket.socket() as first, socket.socket() as last:
                first.bind(("127.0.0.1", start))
                last.bind(("127.0.0.1", start + width - 1))
        except OSError:
            continue
        taken.update(range(start, start + width))
        return start, start + width - 1
    raise RuntimeError("no free worker port range")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class RayNode:
    """One node this test started; ``gcs`` is the cluster's address (the head's)."""

    ip: str
    gcs: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    temp_dir: Path
    dashboard: str | None = None
    _worker_ranges: set[int] = field(default_factory=set, repr=False)

    def wait_started(self, timeout: float = START_SECONDS) -> RayNode:
        """Wait for this node's ``ray start`` to finish; RuntimeError if it failed."""
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"ray start of {self.ip} took over {timeout:.0f} s") from None
        if self.process.returncode != 0:
            raise RuntimeError(f"ray start of {self.ip} failed:\n{out}")
        return self

    def run(self, *argv: str, timeout: float = 90.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, cwd=self.temp_dir)

    def members(self) -> set[int]:
        """This node's live processes: its process group and their descendants."""
        procs: dict[int, tuple[int, int, str]] = {}  # pid → (ppid, pgid, state)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                procs[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
        ours = {pid for pid, (_, pgid, _) in procs.items() if pgid == self.process.pid}
        while more := {pid for pid, (ppid, _, _) in procs.items() if ppid in ours} - ours:
            ours |= more
        return {pid for pid in ours if procs[pid][2] != "Z"}

    def crash(self) -> int:
        """SIGKILL every process of this node at once, as when a machine dies; how many."""
        targets = self.members()
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(targets)

    def kill(self) -> None:
        """Stop this node's processes: SIGTERM, then SIGKILL what is left."""
        targets = self.members()
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                targets = {pid for pid in targets if _alive(pid)}
                if not targets:
                    return
                time.sleep(0.1)


def _ray_start(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """``ray start`` in a session of its own, not waited for (``RayNode.wait_started``)."""
    return subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)


def _node_ports(taken: set[int]) -> list[str]:
    om, nm, agent, agent_grpc, runtime_env, metrics = chosen = free_ports(6)
    taken.update(chosen)  # the workers' range must not hold one of them (Ray refuses to start)
    low, high = _worker_ports(taken)
    return [f"--object-manager-port={om}", f"--node-manager-port={nm}",
            f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={runtime_env}", f"--metrics-export-port={metrics}",
            f"--min-worker-port={low}", f"--max-worker-port={high}",
            f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats"]


def start_head(temp_dir: Path, num_cpus: int, resources: dict[str, float] | None = None,
               ip: str = "127.0.0.1") -> RayNode:
    """A head with its dashboard on loopback (``serve deploy``, the state API), started."""
    gcs, client, dash = free_ports(3)
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **FAST_DEATH_DETECTION)
    env.pop("RAY_ADDRESS", None)
    taken: set[int] = {gcs, client, dash}
    argv = [str(RAY), "start", "--head", f"--node-ip-address={ip}", f"--port={gcs}",
            f"--ray-client-server-port={client}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}", f"--num-cpus={num_cpus}", f"--temp-dir={temp_dir}",
            f"--resources={json.dumps(resources or {})}", *_node_ports(taken)]
    process = _ray_start(argv, env, temp_dir)
    head = RayNode(ip, f"{ip}:{gcs}", env, process, temp_dir, f"http://127.0.0.1:{dash}", taken)
    try:
        return head.wait_started()
    except BaseException:
        head.kill()
        raise


def launch_worker(head: RayNode, ip: str, num_cpus: int,
                  resources: dict[str, float] | None = None) -> RayNode:
    """A worker node on its own loopback address joining ``head``'s cluster; its processes are
    known (``kill``) at once, and ``wait_started`` waits until it has joined."""
    argv = [str(RAY), "start", f"--address={head.gcs}", f"--node-ip-address={ip}",
            f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources or {})}",
            f"--temp-dir={head.temp_dir}", *_node_ports(head._worker_ranges)]
    # The suite keeps every single-node Ray on 127.0.0.1 by turning Ray's multi-node switch off
    # (tests/conftest.py); `ray start --address` refuses to join without it. The worker is given
    # its own loopback address, so it stays on loopback.
    env = dict(head.env, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1")
    return RayNode(ip, head.gcs, head.env, _ray_start(argv, env, head.temp_dir), head.temp_dir)


def start_worker(head: RayNode, ip: str, num_cpus: int,
                 resources: dict[str, float] | None = None) -> RayNode:
    """``launch_worker``, waited for."""
    return launch_worker(head, ip, num_cpus, resources).wait_started()
