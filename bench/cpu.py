"""CPU seconds a system spent on a run: this process and its descendants, read from ``/proc``.

On a box shared with other work, wall-clock rates swing with the load; the CPU a system burns
per notification hardly does. ``CpuMeter`` sums user + system time of this process (all its
threads), of its waited-for children, and of every live descendant except those excluded
(the sinks: their cost is the same whoever sends), between ``start()`` and ``stop()``; and of
the processes of servers the system needs that left the tree (``include``: PostgreSQL, which
``pg_ctl`` starts detached).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from bench.roles import CLIENT

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of ``pid``, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def descendants(root: int) -> dict[int, float]:
    """Every live descendant of ``root`` → its CPU seconds so far."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    found: dict[int, float] = {}
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (parent, _) in stats.items() if parent in frontier}
        found.update({pid: stats[pid][1] for pid in frontier})
    return found


def cpu_of(pids: Iterable[int]) -> float:
    return sum(stat[1] for pid in pids if (stat := _stat(pid)) is not None)


def _argv(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in
                Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def title(pid: int) -> str:
    """A process's whole command line (a Ray worker's: the title Ray gave it), or ``?``."""
    return " ".join(_argv(pid)) or "?"


def label(pid: int) -> str:
    """What a process is, shortly: ``ray::QueueActor``, ``raylet``, ``celery worker``…"""
    argv = _argv(pid)
    if not argv:
        return "?"
    if argv[0].startswith("postgres"):  # its title says what each backend runs: one role
        return "postgres"
    if argv[0].startswith("ray::"):  # Ray's title names the method running: keep the actor
        return argv[0].split()[0].split(".")[0]
    words = [Path(a).name for a in argv[:4] if not a.startswith("-")]
    if words and words[0].startswith("python") and len(words) > 1:
        words = words[1:]
    return " ".join(words[:2]) or "?"


class CpuMeter:
    """``meter.start()`` … ``meter.stop()`` → CPU seconds of this process tree and of the
    ``include``d pids' (and their descendants), ``exclude``d pids (and their descendants) left
    out; a process that ended unwaited-for is lost."""

    def __init__(self, exclude: Iterable[int] = (), include: Iterable[int] = ()) -> None:
        self.exclude = set(exclude)
        self.include = set(include)
        self._before: dict[int, float] = {}
        self._own = 0.0
        #: After ``stop()``: CPU seconds per kind of process (``label``), largest first.
        self.breakdown: dict[str, float] = {}
        #: After ``stop()``: (``title``, CPU seconds) of each process, ``roles.CLIENT`` for this one.
        self.processes: list[tuple[str, float]] = []

    def _tree(self) -> dict[int, float]:
        tree = descendants(os.getpid())
        for root in self.include:
            tree.update(descendants(root))
            if (stat := _stat(root)) is not None:
                tree[root] = stat[1]
        for pid in list(self.exclude):
            for child in descendants(pid):
                tree.pop(child, None)
            tree.pop(pid, None)
        return tree

    @staticmethod
    def _self() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system

    def start(self) -> CpuMeter:
        self._before, self._own = self._tree(), self._self()
        return self

    def stop(self) -> float:
        after = self._tree()
        parts = {CLIENT: self._self() - self._own}
        self.processes = [(CLIENT, parts[CLIENT])]
        for pid, seconds in after.items():
            name, spent = label(pid), seconds - self._before.get(pid, 0.0)
            parts[name] = parts.get(name, 0.0) + spent
            self.processes.append((title(pid), spent))
        self.breakdown = dict(sorted(parts.items(), key=lambda kv: -kv[1]))
        return sum(parts.values())
