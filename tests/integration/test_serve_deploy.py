"""Herald deployed the way a Ray user deploys: ``ray start --head``, ``serve deploy serve_config.yaml``.

The test starts a Ray head of its own (1 CPU, every port chosen free, bound for loopback use,
token auth off, a temp dir of its own), deploys the repository's ``serve_config.yaml`` with
the ports, data dir and SMTP server of the test swapped in, sends one email and sees it at
the SMTP server, stops Herald with ``python -m launcher.builder stop``, and then kills only
the processes of that head (their process group). Skipped when the ``ray`` CLI is absent.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from capture.smtp_sink import SmtpSink
from tests.support.payloads import email_payload

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAY = shutil.which("ray", path=str(BIN)) or shutil.which("ray")
SERVE = shutil.which("serve", path=str(BIN)) or shutil.which("serve")
KEY = "deploy-key-" + "d" * 20

pytestmark = pytest.mark.skipif(RAY is None or SERVE is None, reason="the ray/serve CLI is absent")


def _free_ports(count: int) -> list[int]:
    """Ports free now, all different (held open together while chosen)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _worker_ports(width: int = 64) -> tuple[int, int]:
    """A range of ports for the head's workers that is free now (the default range is shared
    with every other Ray on the machine)."""
    for start in range(30_000 + os.getpid() % 50 * 200, 60_000, 200):
        try:
            with socket.socket() as first, socket.socket() as last:
                first.bind(("127.0.0.1", start))
                last.bind(("127.0.0.1", start + width - 1))
            return start, start + width - 1
        except OSError:
            continue
    raise RuntimeError("no free worker port range")


@dataclass
class Head:
    gcs: str
    dashboard: str
    env: dict[str, str]
    process: subprocess.Popen[str]
    temp_dir: Path

    def run(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=self.temp_dir)

    def members(self) -> set[int]:
        """This head's live processes: ``ray start`` ran in a session (and group) of its own,
        which the head's daemons inherit; the workers its raylet starts get groups of their
        own, so they are found as descendants."""
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

    def kill(self) -> None:
        """Only this head's processes, never ``ray stop`` (it stops every Ray on the machine)."""
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


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    temp_dir = Path(tempfile.mkdtemp(prefix="hsd", dir="/tmp"))  # short: unix socket paths
    gcs, om, nm, client, dash, agent, agent_grpc, runtime_env, metrics = _free_ports(9)
    low, high = _worker_ports()
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    argv = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
            f"--object-manager-port={om}", f"--node-manager-port={nm}",
            f"--ray-client-server-port={client}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={runtime_env}",
            f"--metrics-export-port={metrics}", f"--min-worker-port={low}",
            f"--max-worker-port={high}", "--num-cpus=1", f"--temp-dir={temp_dir}",
            "--disable-usage-stats"]
    process = subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True, cwd=temp_dir)
    started = Head(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", env, process, temp_dir)
    try:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0, out
        yield started
    finally:
        started.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _config(path: Path, data_dir: Path, port: int, browser_port: int, smtp_url: str) -> Path:
    """The repository's serve_config.yaml with this test's ports, data dir and peers."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"]["port"] = port
    app = config["applications"][0]
    app["runtime_env"]["env_vars"].update(
        HERALD_DATA_DIR=str(data_dir), HERALD_PORT=str(port), HERALD_BROWSER_PORT=str(browser_port),
        HERALD_SMTP_URL=smtp_url, HERALD_API_KEYS=f"acme:{KEY}", HERALD_SHARDS="2",
        HERALD_POOLS="email=1,sms=0,browser=1,fax=0,webhook=1", HERALD_SQLITE_SYNCHRONOUS="NORMAL")
    path.write_text(yaml.safe_dump(config))
    return path


def test_serve_deploy_delivers_and_stops(head: Head, tmp_path: Path) -> None:
    started = time.monotonic()
    port, browser_port = _free_ports(2)
    with SmtpSink() as sink:
        config = _config(tmp_path / "serve_config.yaml", tmp_path / "data", port, browser_port,
                         sink.url)
        deployed = head.run(str(SERVE), "deploy", str(config), "-a", head.dashboard)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            status = head.run(str(SERVE), "status", "-a", head.dashboard)
            pytest.fail(f"Herald did not come up under serve deploy:\n{status.stdout}{status.stderr}")
        headers = {"Authorization": f"Bearer {KEY}"}
        answer = httpx.post(f"{base}/v1/notifications", json=email_payload(), headers=headers,
                            timeout=30)
        assert answer.status_code == 202, answer.text
        tag = answer.json()["details"]["tag"]
        sink.wait_for_tag(tag, timeout=30)
        status = httpx.get(f"{base}/v1/notifications/{tag}", params={"wait": 20}, headers=headers,
                           timeout=30)
        assert status.json()["status"] == "sent", status.text
        # The shards wrote where HERALD_DATA_DIR said, not in some worker's cwd.
        assert sorted(p.name for p in (tmp_path / "data" / "queue").glob("shard-*.db")) == [
            "shard-0.db", "shard-1.db"]

        stop = head.run(sys.executable, "-m", "launcher.builder", "stop", "--address", head.gcs,
                        "--timeout", "5")
        assert stop.returncode == 0 and "herald stopped" in stop.stdout, stop.stdout + stop.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{base}/healthz", timeout=2).raise_for_status()
    print(f"serve deploy → delivered → stopped in {time.monotonic() - started:.1f} s")
