"""``herald up`` as a subprocess we can SIGKILL whole, and the memory (RSS) of Herald's processes.

Only this Herald's processes are ever killed: it runs in its own process group with its own
Ray temp dir (``RAY_TMPDIR``), and every process it starts (Ray's GCS, raylet, workers…)
inherits a ``CHAOS_HERALD_RUN=<id>`` environment variable that marks it. ``kill_all`` kills
the group, the descendants and then any process still carrying the mark; nothing like
``ray stop``, which would take every Ray on the machine with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import ray  # noqa: F401 - puts Ray's bundled psutil on sys.path

import psutil  # isort: skip

MARK = "CHAOS_HERALD_RUN"
#: Set to 1 to keep each ``herald up``'s console and Ray logs (their folder is printed).
KEEP_LOGS = "CHAOS_KEEP_LOGS"


def _marked(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(MARK) == mark:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def http_status(port: int, path: str) -> int:
    """The status of ``GET path`` on loopback ``port``; 0 if nothing answers (cheap: no client)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = sock.recv(64).split(b" ", 2)
    except OSError:
        return 0
    return int(head[1]) if len(head) > 1 and head[1].isdigit() else 0


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def tree_rss(roots: list[psutil.Process], include_roots: bool = True) -> int:
    """Bytes resident in ``roots`` and all their descendants."""
    seen: dict[int, psutil.Process] = {}
    for root in roots:
        try:
            procs = root.children(recursive=True) + ([root] if include_roots else [])
        except psutil.Error:
            continue
        seen.update((p.pid, p) for p in procs)
    total = 0
    for proc in seen.values():
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


class RssSampler:
    """Samples ``measure()`` every ``interval`` s in a thread; keeps the peak and the last."""

    def __init__(self, measure: Callable[[], int], interval: float = 1.0) -> None:
        self.measure, self.interval = measure, interval
        self.peak = self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> int:
        self.last = self.measure()
        self.peak = max(self.peak, self.last)
        return self.last

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class HeraldProcess:
    """``herald up`` with ``env`` on ``data_dir``; ``start()``, ``kill_all()``, ``stop()``."""

    def __init__(self, data_dir: Path, env: dict[str, str], port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.mark = uuid.uuid4().hex
        # Short: Ray's unix sockets live under it, and a socket path has ~107 bytes at most.
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="hcr-", dir="/tmp"))
        self.env = dict(os.environ, **env, HERALD_DATA_DIR=str(data_dir), HERALD_PORT=str(port),
                        RAY_TMPDIR=str(self.ray_tmp), RAY_DEDUP_LOGS="0")
        self.env[MARK] = self.mark
        self.env.pop("RAY_ADDRESS", None)
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.starts = 0
        #: Answers to ``GET /healthz`` other than 200 while starting (status → count).
        self.startup_answers: dict[int, int] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240.0) -> float:
        """Start and wait for ``/healthz``; the seconds it took."""
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "launcher.cli", "up"], env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=Path(__file__).resolve().parents[2])
        self.starts += 1
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError("herald up exited:\n" + self.tail())
            # Every 5 ms: Serve's proxy answers 404 for ~0.1 s before the app is deployed.
            status = http_status(self.port, "/healthz")
            if status == 200:
                return time.monotonic() - started
            if status:
                self.startup_answers[status] = self.startup_answers.get(status, 0) + 1
            time.sleep(0.005)
        self.kill_all()
        raise TimeoutError(f"herald up not healthy within {timeout} s:\n" + self.tail())

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with (self.ray_tmp / "console.log").open("a") as console:
            for line in process.stdout:
                console.write(line)
                self.lines.append(line.rstrip("\n"))
                del self.lines[:-400]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.lines[-lines:])

    def processes(self) -> list[psutil.Process]:
        return _marked(self.mark)

    def rss(self) -> int:
        """Bytes resident in every process of this Herald (the CLI, Ray and its workers)."""
        return tree_rss(self.processes())

    def kill_all(self, timeout: float = 30.0) -> int:
        """SIGKILL every process of this Herald, now; how many there were."""
        victims = {p.pid: p for p in self.processes()}
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed = set(victims)
        deadline = time.monotonic() + timeout
        while victims and time.monotonic() < deadline:
            for proc in list(victims.values()):
                if not _alive(proc):
                    victims.pop(proc.pid)
                    continue
                try:
                    proc.kill()
                except psutil.Error:
                    victims.pop(proc.pid, None)
            for proc in self.processes():  # started after the first snapshot
                if _alive(proc):
                    victims.setdefault(proc.pid, proc)
                    killed.add(proc.pid)
            if self.process is not None:
                self.process.poll()  # reap it: a zombie is not running
            time.sleep(0.1)
        if self.process is not None:
            self.process.wait(timeout=10)
        return len(killed)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (Herald drains and stops Ray), then make sure nothing of it is left."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_all()
        if os.environ.get(KEEP_LOGS) == "1":
            print(f"herald up's console and Ray's logs: {self.ray_tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)
