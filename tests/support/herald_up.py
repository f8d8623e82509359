"""`herald up` as a subprocess for end-to-end tests: its console read as it comes, its start
watched from the first moment (every answer counted), its stop by any signal."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from capture.net import free_port
from jobs.ray_private import LOOPBACK_SWITCH

ROOT = Path(__file__).resolve().parents[2]


def user_env(**values: str) -> dict[str, str]:
    """The environment of a user's shell: ours minus what the test session adds for Ray.

    tests/conftest.py sets Ray's loopback switch for the test process; a user's shell has it
    not, and `herald up` and the CLI must work without it."""
    env = {k: v for k, v in os.environ.items() if k != LOOPBACK_SWITCH}
    env.update(values)
    return env


@dataclass
class Console:
    """Everything `herald up` prints, read as it comes: an unread pipe would fill and block it."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not printed within {timeout} s:\n" + self.text())
            time.sleep(0.1)

    def text(self) -> str:
        self._reader.join(timeout=0 if self.process.poll() is None else 10)
        return "\n".join(self.lines)


@dataclass
class HeraldUp:
    """One `herald up` in its own process group (as systemd or a container runs it)."""

    data_dir: Path
    env: dict[str, str]
    port: int
    console: Console | None = None
    #: Status codes answered while starting, by path ("" for no connection yet).
    start_answers: dict[str, collections.Counter[int]] = field(default_factory=dict)

    @classmethod
    def configure(cls, data_dir: Path, **settings: str) -> HeraldUp:
        port = free_port()
        env = user_env(HERALD_PORT=str(port), HERALD_DATA_DIR=str(data_dir),
                       HERALD_BROWSER_PORT=str(free_port()),
                       HERALD_DASHBOARD_PORT=str(free_port()), **settings)
        return cls(data_dir, env, port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[str]:
        assert self.console is not None
        return self.console.process

    def start(self, timeout: float = 180.0, probe: dict[str, object] | None = None,
              until: frozenset[str] = frozenset({"ok"})) -> str:
        """Start it and wait until ``/healthz`` says one of ``until`` (``ok`` is its 200; a
        deployment that may be another's standby says ``standby``, with a 503); return which.
        Meanwhile GET ``/healthz`` and, if ``probe`` (a notification) is given, POST it to
        ``/v1/notifications`` as fast as a client would retry, counting every answer in
        ``start_answers``."""
        process = subprocess.Popen(
            [sys.executable, "-m", "launcher.cli", "up"], env=self.env, cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.console = Console(process)
        self.start_answers = {"/healthz": collections.Counter(),
                              "/v1/notifications": collections.Counter()}
        headers = {"Authorization": f"Bearer {self.env.get('HERALD_API_KEYS', ':').split(':')[1]}"}
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=5, headers=headers) as client:
            while time.monotonic() < deadline:
                if probe is not None and not self.start_answers["/v1/notifications"][202]:
                    self._count(client, "POST", "/v1/notifications", probe)
                status = self._health(client)
                if status in until:
                    return status
                if process.poll() is not None:
                    pytest.fail(f"herald up exited with {process.returncode}:\n{self.console.text()}")
                time.sleep(0.01)
        self.kill()
        pytest.fail(f"herald up did not become healthy in {timeout} s:\n{self.console.text()}")

    def _count(self, client: httpx.Client, method: str, path: str,
               payload: dict[str, object] | None = None) -> httpx.Response | None:
        try:
            answer = client.request(method, path, json=payload)
        except httpx.HTTPError:
            answer = None
        self.start_answers[path][0 if answer is None else answer.status_code] += 1
        return answer

    def _health(self, client: httpx.Client) -> str | None:
        """What ``/healthz`` says (``ok``, ``standby``, ``down``); None while it cannot."""
        answer = self._count(client, "GET", "/healthz")
        if answer is None or answer.status_code not in (200, 503):
            return None
        try:
            return str(answer.json()["status"])
        except (ValueError, KeyError, TypeError):  # Serve's proxy before the app: not ours
            return None

    def signal(self, sig: signal.Signals, group: bool = False) -> float:
        """Send ``sig`` to the process (or its whole group); seconds until it exited."""
        sent = time.monotonic()
        if group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"herald up did not stop within 60 s of {sig.name}")
        return time.monotonic() - sent

    def kill(self) -> None:
        """SIGKILL whatever is left of it (``crash``), if it was started."""
        if self.console is not None:
            self.crash()

    def crash(self) -> list[int]:
        """SIGKILL the whole of it at once, as a machine that dies: its process group, its
        session and every descendant. Ray's daemons stay in its group, but each Ray worker
        (every actor) makes a group of its own: it is still in the session. The pids killed."""
        pids = _own_processes(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        return sorted(pids)

    def survivors(self, pids: list[int]) -> list[int]:
        """Which of ``pids`` still run (a zombie waiting for its parent has stopped)."""
        return [pid for pid in pids if _state(pid) not in (None, "Z", "X")]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command (state, ppid, pgrp, session, …)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _state(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[0] if fields else None


def _own_processes(leader: int) -> set[int]:
    """``leader`` (a session leader), the members of its session and all their descendants."""
    parents: dict[int, int] = {}
    found = {leader}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None:
            continue
        parents[int(entry.name)] = int(fields[1])
        if int(fields[3]) == leader:
            found.add(int(entry.name))
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return found
