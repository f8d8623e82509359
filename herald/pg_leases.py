"""Who owns what on a shared PostgreSQL: the active deployment and each shard's owner, fenced.

Every lease is a row of ``herald_leases``: ``'deployment'`` (which Herald deployment is the
active one; a second one on the same database is its standby) and ``'shard-N'`` (the one
process that may write shard N). A holder is ``"{deployment_id}/{host}:{pid}"``
(``holder_name``); a lease expires when its ``renewed_at`` is older than the lease time. Only
the database's clock (``now()``) is read, so Heralds on machines whose clocks disagree still
agree on who owns what.

The epoch grows by one at every new owner of a shard: the owner's writes carry it
(``herald.pg_storage`` runs ``FENCE_SQL`` first in every write transaction), so an owner that
was paused past its lease (a SIGSTOP, a long GC, a partition) and then wakes up finds its epoch
gone and writes nothing. Each function is one statement, so two Heralds racing for a lease are
ordered by the row lock: ``INSERT … ON CONFLICT … DO UPDATE … WHERE`` re-checks its condition on
the newest row, and at most one of them gets ``RETURNING epoch``.

Functions take a psycopg connection in autocommit mode (each statement its own transaction).
"""

from __future__ import annotations

import os
import socket
from typing import Any

__all__ = ["DEPLOYMENT", "FENCE_SQL", "acquire_deployment", "acquire_shard", "active_deployment",
           "holder_name", "release", "renew", "shard_lease"]

#: The name of the active deployment's lease.
DEPLOYMENT = "deployment"
#: Renews an owner's lease and proves it is still the owner: the first statement of every
#: write transaction; a transaction where it matches no row is rolled back (``Fenced``).
FENCE_SQL = "UPDATE herald_leases SET renewed_at = now() WHERE name = %s AND holder = %s AND epoch = %s"

_EXPIRED = "l.renewed_at < now() - make_interval(secs => %(lease)s)"

_ACQUIRE_DEPLOYMENT = f"""
INSERT INTO herald_leases AS l (name, holder, epoch, renewed_at)
VALUES ('{DEPLOYMENT}', %(holder)s, 1, now())
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder, renewed_at = now(),
    epoch = CASE WHEN l.holder = EXCLUDED.holder THEN l.epoch ELSE l.epoch + 1 END
WHERE l.holder = EXCLUDED.holder OR {_EXPIRED}
RETURNING l.epoch
"""

# Nothing is inserted unless the deployment lease is this deployment's and alive; an existing
# shard lease is taken over when it expired or belongs to this same deployment (a restarted
# actor need not wait for its own previous incarnation to expire).
_ACQUIRE_SHARD = f"""
INSERT INTO herald_leases AS l (name, holder, epoch, renewed_at)
SELECT %(name)s, %(holder)s, 1, now()
WHERE EXISTS (SELECT 1 FROM herald_leases d WHERE d.name = '{DEPLOYMENT}'
              AND d.holder = %(deployment)s
              AND d.renewed_at >= now() - make_interval(secs => %(lease)s))
ON CONFLICT (name) DO UPDATE
SET holder = EXCLUDED.holder, epoch = l.epoch + 1, renewed_at = now()
WHERE {_EXPIRED} OR starts_with(l.holder, %(prefix)s)
RETURNING l.epoch
"""


def holder_name(deployment_id: str) -> str:
    """This process's holder string: ``"{deployment_id}/{host}:{pid}"``."""
    return f"{deployment_id}/{socket.gethostname()}:{os.getpid()}"


def shard_lease(shard: int) -> str:
    """The lease name of shard ``shard``."""
    return f"shard-{shard}"


def _epoch(conn: Any, sql: str, params: dict[str, Any]) -> int | None:
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else None


def acquire_deployment(conn: Any, deployment_id: str, lease_seconds: float) -> int | None:
    """Become (or stay) the active deployment: taken when absent, expired, or already ours
    (then it is renewed). The epoch, one more than before on a new holder; None when another
    deployment holds it."""
    return _epoch(conn, _ACQUIRE_DEPLOYMENT, {"holder": deployment_id, "lease": lease_seconds})


def acquire_shard(conn: Any, shard: int, holder: str, deployment_id: str,
                  lease_seconds: float) -> int | None:
    """Own shard ``shard`` as ``holder`` (of ``deployment_id``), with a new epoch; None while
    ``deployment_id`` is not the live active deployment, or another deployment's owner holds
    an unexpired lease on the shard."""
    return _epoch(conn, _ACQUIRE_SHARD, {
        "name": shard_lease(shard), "holder": holder, "deployment": deployment_id,
        "lease": lease_seconds, "prefix": deployment_id + "/"})


def renew(conn: Any, name: str, holder: str, epoch: int) -> bool:
    """Renew lease ``name``; False when ``holder`` at ``epoch`` no longer holds it."""
    return conn.execute(FENCE_SQL, (name, holder, epoch)).rowcount == 1


def release(conn: Any, name: str, holder: str, epoch: int) -> None:
    """Give lease ``name`` up (if still held at ``epoch``): expired at once, so the next owner
    need not wait for it to run out."""
    conn.execute("UPDATE herald_leases SET renewed_at = '-infinity'"
                 " WHERE name = %s AND holder = %s AND epoch = %s", (name, holder, epoch))


def active_deployment(conn: Any, lease_seconds: float) -> str | None:
    """The deployment holding an unexpired deployment lease, if any."""
    row = conn.execute(
        f"SELECT holder FROM herald_leases WHERE name = '{DEPLOYMENT}'"
        " AND renewed_at >= now() - make_interval(secs => %s)", (lease_seconds,)).fetchone()
    return str(row[0]) if row else None
