"""Process bookkeeping for the benchmarks: which processes a Herald started, their memory and role.

Linux only (``/proc``). A Herald started in its own session (``setsid``) is tracked by session id:
Ray's workers change their process group but keep the session. Processes that left both the
session and the tree (none do today) would still be found by the Ray session directory in their
command line. RSS counts shared pages once per process (it overstates); PSS splits them.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

PROC = Path("/proc")
T = TypeVar("T")
_SESSION_DIR = re.compile(r"/session_\d{4}-\d\d-\d\d_[\d_-]+")

#: Command-line fragments → role, first match wins (Ray sets ``ray::<Class>`` as a worker's title).
ROLES: tuple[tuple[str, str], ...] = (
    ("ray::ServeReplica:", "Serve replica"),
    ("ray::ProxyActor", "Serve proxy"),
    ("ray::ServeController", "Serve controller"),
    ("ray::QueueActor", "QueueActor (shard)"),
    ("ray::ChannelActor", "ChannelActor"),
    ("ray::Supervisor", "Supervisor"),
    ("ray::RateLimiter", "RateLimiter"),
    ("ray::DashboardAgent", "dashboard agent"),
    ("ray::RuntimeEnvAgent", "runtime-env agent"),
    ("ray::IDLE", "idle worker"),
    ("ray::", "other Ray worker"),
    ("ray-dashboard-", "dashboard module"),
    ("multiprocessing.forkserver", "dashboard forkserver"),
    ("multiprocessing.resource_tracker", "resource tracker"),
    ("/gcs_server", "gcs_server"),
    ("/raylet ", "raylet"),
    ("dashboard/dashboard.py", "dashboard"),
    ("dashboard/agent.py", "dashboard agent"),
    ("autoscaler/_private/monitor.py", "autoscaler monitor"),
    ("log_monitor.py", "log monitor"),
    ("herald up", "herald up (driver)"),
    ("postgres: ", "postgres"),  # a backend or helper: its title says which
    ("/bin/postgres ", "postgres"),  # the postmaster
)


def role_of(cmdline: str) -> str:
    """What a process is, from its command line (``ps`` shows the same)."""
    padded = cmdline + " "
    for fragment, role in ROLES:
        if fragment in padded:
            return role
    return "other"


def ray_session_of(cmdline: str) -> str | None:
    """The Ray session directory name in a command line (raylet, gcs_server…), if any."""
    found = _SESSION_DIR.search(cmdline)
    return found.group(0).lstrip("/") if found else None


@dataclass(frozen=True)
class ProcInfo:
    """One process: its ids, memory (KiB) and what it is."""

    pid: int
    ppid: int
    sid: int
    rss_kib: int
    pss_kib: int
    cmdline: str
    #: Private pages only: what ending this process would give back.
    uss_kib: int = 0

    @property
    def role(self) -> str:
        return role_of(self.cmdline)


def _stat_fields(pid: int) -> list[str]:
    text = (PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2:].split()  # after "pid (comm) "


def _rollup(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0])
    return values


def read_proc(pid: int) -> ProcInfo | None:
    """The process ``pid`` now, or None if it is gone (or a kernel thread)."""
    try:
        fields = _stat_fields(pid)
        cmdline = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace").strip()
        memory = _rollup(pid)
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    if not cmdline:
        return None
    return ProcInfo(pid=pid, ppid=int(fields[1]), sid=int(fields[3]),
                    rss_kib=memory.get("Rss", 0), pss_kib=memory.get("Pss", 0), cmdline=cmdline,
                    uss_kib=memory.get("Private_Clean", 0) + memory.get("Private_Dirty", 0))


def all_pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def select_family(processes: Iterable[ProcInfo], root: int) -> list[ProcInfo]:
    """The processes ``root`` started: its session, its descendants, and anything naming the Ray
    session one of those runs (a daemon that re-parented). Never another Ray on the machine."""
    processes = list(processes)
    by_parent: dict[int, list[ProcInfo]] = {}
    for proc in processes:
        by_parent.setdefault(proc.ppid, []).append(proc)
    family = {p.pid: p for p in processes if p.pid == root or p.sid == root}
    stack = list(family)
    while stack:
        for child in by_parent.get(stack.pop(), []):
            if child.pid not in family:
                family[child.pid] = child
                stack.append(child.pid)
    sessions = {s for p in family.values() if (s := ray_session_of(p.cmdline))}
    for proc in processes:
        if proc.pid not in family and ray_session_of(proc.cmdline) in sessions:
            family[proc.pid] = proc
    return sorted(family.values(), key=lambda p: p.rss_kib, reverse=True)


def family_of(root: int) -> list[ProcInfo]:
    """``select_family`` over every process on the machine now."""
    return select_family((p for pid in all_pids() if (p := read_proc(pid)) is not None), root)


def children_of(root: int) -> list[ProcInfo]:
    """The descendants of ``root`` (e.g. this benchmark's own Ray), biggest first."""
    processes = [p for pid in all_pids() if (p := read_proc(pid)) is not None]
    by_parent: dict[int, list[ProcInfo]] = {}
    for proc in processes:
        by_parent.setdefault(proc.ppid, []).append(proc)
    found: list[ProcInfo] = []
    stack = [root]
    while stack:
        for child in by_parent.get(stack.pop(), []):
            found.append(child)
            stack.append(child.pid)
    return found


def _listening_inodes(port: int | None = None) -> dict[str, int]:
    """Socket inode → port of every TCP socket listening (on ``port`` only, if given)."""
    found: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.split()
            local = int(parts[1].rsplit(":", 1)[1], 16)
            if parts[3] == "0A" and (port is None or local == port):  # 0A: LISTEN
                found[f"socket:[{parts[9]}]"] = local
    return found


def _socket_links(pid: int) -> list[str]:
    try:
        return [os.readlink(fd) for fd in (PROC / str(pid) / "fd").iterdir()]
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return []


def listening_ports(pid: int) -> list[int]:
    """The TCP ports ``pid`` listens on."""
    inodes = _listening_inodes()
    return sorted({inodes[link] for link in _socket_links(pid) if link in inodes})


def pid_listening_on(port: int) -> int | None:
    """The process holding a TCP socket listening on ``port``, if any."""
    wanted = _listening_inodes(port)
    if not wanted:
        return None
    for pid in all_pids():
        if any(link in wanted for link in _socket_links(pid)):
            return pid
    return None


def load_average() -> str:
    """``uptime``'s three figures, to print beside a figure measured on a shared box."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def stop_session(pid: int, timeout: float = 60.0) -> bool:
    """SIGTERM ``pid`` (a Herald in its own session); after ``timeout`` s SIGKILL what is left of
    its session. True if it stopped by itself."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in family_of(pid) if p.sid == pid]:
            return True
        time.sleep(0.5)
    for proc in family_of(pid):
        if proc.sid == pid:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return False


def mib(kib: int) -> float:
    return kib / 1024


#: What a start on a crowded shared box may fail with, and succeed on the next try.
TRANSIENT_START = ("bind", "timed out during startup")


def start_retrying(start: Callable[[], T], attempts: int = 3) -> T:
    """``start()`` (which picks its own free ports), again if it failed transiently: a port
    taken between picking and binding, or a Ray that did not come up within its fixed 30 s
    on an overloaded box."""
    for attempt in range(attempts):
        try:
            return start()
        except Exception as exc:  # Ray wraps these in exceptions of its own
            if attempt == attempts - 1 or not any(t in str(exc).lower() for t in TRANSIENT_START):
                raise
            time.sleep(2)
    raise AssertionError("unreachable")
