"""Which part of Herald spent a run's CPU: each process's command line → a role, and the table.

Ray names a worker after what it runs (``ray::QueueActor``, ``ray::QueueActor.lease`` while in
that method, ``ray::ServeReplica:herald:Intake``, ``ray::ProxyActor``), so the roles of issue 19
are read from the titles ``bench.cpu.CpuMeter`` saw: the Serve proxy, the Intake replica(s),
the shards, the channel actors, and the others (Ray's own raylet, GCS, Serve controller, idle
workers; the Supervisor, the rate limiter…). The benchmark's own process (the load it posts
and Herald's Ray driver) and a PostgreSQL store are roles of their own, so that each can be
told apart from Herald proper; all of them count in Herald's total, as they always did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bench.targets import markdown

#: ``bench.cpu.CpuMeter``'s name for the process it runs in (no command line of its own there).
CLIENT = "client (this process)"

PROXY, REPLICA, SHARDS, CHANNELS, OTHERS = ("proxy", "replica", "shards", "channel actors",
                                            "others")
DRIVER, STORE = "client + driver", "PostgreSQL"
#: Print order.
ROLES = (PROXY, REPLICA, SHARDS, CHANNELS, OTHERS, DRIVER, STORE)

#: Fragments of a Ray worker's title → role, first match wins.
_RAY_TITLES = (
    ("ProxyActor", PROXY),  # ray::ProxyActor (HTTPProxyActor on older Rays)
    ("ServeReplica:", REPLICA),
    ("QueueActor", SHARDS),
    ("ChannelActor", CHANNELS),
)


def herald_role(title: str) -> str:
    """The role of a process of Herald's from its command line (or ``CLIENT``)."""
    if title == CLIENT:
        return DRIVER
    first = title.split(" ", 1)[0]
    if first.startswith("ray::"):
        return next((role for fragment, role in _RAY_TITLES if fragment in first), OTHERS)
    if first.startswith("postgres") or "/bin/postgres" in first:
        return STORE
    return OTHERS


def cpu_by_role(processes: Iterable[tuple[str, float]]) -> dict[str, float]:
    """(title, CPU seconds) of each process → CPU seconds per role, in ``ROLES`` order (a role
    no process had is left out)."""
    found: dict[str, float] = {}
    for title, seconds in processes:
        role = herald_role(title)
        found[role] = found.get(role, 0.0) + seconds
    return {role: found[role] for role in ROLES if role in found}


def role_table(herald: Mapping[str, Mapping[str, float]], others: Mapping[str, float],
               delivered: Mapping[str, int]) -> str:
    """Markdown: ms of CPU per delivered notification, one row per role and a total; a column per
    Herald (``herald``: name → CPU seconds by role) and per peer (``others``: name → CPU
    seconds in all), each divided by its ``delivered``."""
    columns = [*herald, *others]
    roles = [r for r in ROLES if any(r in seconds for seconds in herald.values())]

    def ms(name: str, seconds: float | None) -> str:
        return "" if seconds is None else f"{1000 * seconds / delivered[name]:.3f}"

    rows = [["role (ms CPU / delivered)", *columns]]
    rows += [[role, *(ms(h, herald[h].get(role)) for h in herald), *([""] * len(others))]
             for role in roles]
    rows.append(["total", *(ms(h, sum(herald[h].values())) for h in herald),
                 *(ms(o, s) for o, s in others.items())])
    return markdown(rows)
