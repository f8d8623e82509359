"""The active deployment's lease (PostgreSQL only), held and renewed by the Supervisor.

Of the Heralds sharing one ``HERALD_DATABASE_URL`` exactly one is active: the one holding the
``deployment`` lease (``herald.pg_leases``). Its shards may own their shard leases; the others'
shards wait as standbys (``/healthz`` 503 ``standby``). The Supervisor renews it every third of
``shard_lease_seconds``; a deployment that stops renewing (killed, cut off, paused) loses it
after ``shard_lease_seconds``, and the standby's Supervisor takes it on its next try. A clean
stop releases it, so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from herald.config import Settings
from herald.pg_connect import connect
from herald.pg_leases import acquire_deployment, release
from herald.pg_schema import migrate

log = logging.getLogger("herald.supervisor")
DEPLOYMENT = "deployment"


class DeploymentLease:
    """Try for the lease, then keep renewing it, in a loop of its own (``run``)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.database_url is not None and settings.deployment_id is not None
        self._url = settings.database_url
        self._deployment = settings.deployment_id
        self._lease = settings.shard_lease_seconds
        self._conn: Any = None
        self.epoch: int | None = None  # held while not None

    def _try(self) -> int | None:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._url)
            migrate(self._conn)
        return acquire_deployment(self._conn, self._deployment, self._lease)

    async def run(self) -> None:
        while True:
            try:
                epoch = await asyncio.to_thread(self._try)
            except Exception as exc:  # noqa: BLE001 - the database is away: try again
                log.warning("deployment lease: %s", type(exc).__name__)
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                self._conn = None
                epoch = None
            if (epoch is None) != (self.epoch is None):
                log.warning("this deployment is %s", "a standby" if epoch is None else "active",
                            extra={"deployment": self._deployment})
            self.epoch = epoch
            await asyncio.sleep(self._lease / 3 if epoch is not None else 1.0)

    def release(self) -> None:
        """At a clean stop: the standby need not wait for the lease to expire."""
        if self.epoch is not None and self._conn is not None:
            with contextlib.suppress(Exception):
                release(self._conn, DEPLOYMENT, self._deployment, self.epoch)
        self.epoch = None
