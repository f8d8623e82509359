"""SIGKILL Herald's processes by kind: queue shard, channel actor, Supervisor, Serve replica and proxy.

Pids come from the GCS actor table of the Ray this process is connected to
(``jobs.ray_private.actor_table``: no dashboard needed), so only that Ray's actors are ever
candidates, never another Ray on the same machine; a pid is also checked to still be a
``ray::`` process before it is killed.
"""

from __future__ import annotations

import collections
import os
import random
import signal
from typing import Any

import ray

from jobs.ray_private import actor_table

KINDS = ("queue", "channel", "supervisor", "replica", "proxy")


def kind_of(actor: dict[str, Any]) -> str | None:
    """Which kind of Herald process an actor-table entry is (None: not one we kill)."""
    name = str(actor.get("ActorClassName", ""))
    if name == "QueueActor":
        return "queue"
    if name == "ChannelActor":
        return "channel"
    if name == "Supervisor":
        return "supervisor"
    if name.startswith("ServeReplica:herald:"):
        return "replica"
    if name == "ProxyActor":
        return "proxy"
    return None


def live_pids() -> dict[str, list[tuple[str, int]]]:
    """Kind → [(actor name, pid)] of the live actors of each kind."""
    found: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    for actor in actor_table().values():
        kind = kind_of(actor)
        pid = int(actor.get("Pid") or 0)
        if kind and actor.get("State") == "ALIVE" and pid > 0:
            found[kind].append((str(actor.get("Name") or actor["ActorClassName"]), pid))
    return found


def _is_ray_worker(pid: int) -> bool:
    import psutil  # Ray ships it (ray/thirdparty_files), on sys.path once ray is imported

    try:
        title = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False
    return title.startswith("ray::")


class Killer:
    """Kills one random live process of a kind at a time and counts what it killed."""

    def __init__(self, seed: int | None = None) -> None:
        assert ray.is_initialized(), "connect to Herald's Ray first"
        self.rng = random.Random(seed)
        self.kills: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, str, int]] = []

    def kill(self, kind: str) -> int | None:
        """SIGKILL one live process of ``kind``; its pid, or None if none was found."""
        candidates = [c for c in live_pids().get(kind, []) if _is_ray_worker(c[1])]
        if not candidates:
            return None
        name, pid = self.rng.choice(candidates)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        self.kills[kind] += 1
        self.log.append((kind, name, pid))
        return pid

    def kill_random(self) -> str | None:
        """Kill one process of a random kind; the kind, or None if nothing was killed."""
        kind = self.rng.choice(KINDS)
        return kind if self.kill(kind) is not None else None
