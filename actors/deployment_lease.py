"""The active deployment's lease (PostgreSQL only), held and renewed by the Supervisor.

Of the Heralds sharing one ``HERALD_DATABASE_URL`` exactly one is active: the one holding the
``deployment`` lease (``herald.pg_leases``). Its shards may own their shard leases; the others'
shards wait as standbys (``/healthz`` 503 ``standby``). The Supervisor renews it every third of
``shard_lease_seconds``; a deployment that stops renewing (killed, cut off, paused) loses it
after ``shard_lease_seconds``, and the standby's Supervisor takes it on its next try. A clean
stop releases it, so a standby takes over at once.

A database that stops answering raises nothing: a stalled disk, or a primary cut off whose
standby was promoted, leaves a statement waiting for ever. A try that waited for ever would let
the lease run out in the promoted database, and this deployment's shards, reconnected there,
would wait as standbys behind it. So each try runs in a thread of its own and is given up after
``shard_lease_seconds``; the next one starts on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from herald.config import Settings
from herald.pg_connect import connect
from herald.pg_leases import DEPLOYMENT, acquire_deployment, release
from herald.pg_schema import migrate

log = logging.getLogger("herald.supervisor")


class DeploymentLease:
    """Try for the lease, then keep renewing it, in a loop of its own (``run``)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.database_url is not None and settings.deployment_id is not None
        self._url = settings.database_url
        self._deployment = settings.deployment_id
        self._lease = settings.shard_lease_seconds
        self._conn: Any = None
        self.epoch: int | None = None  # held while not None

    def _try(self, conn: Any) -> tuple[Any, int | None]:
        """One try over ``conn`` (a new connection if None or closed): the connection used,
        and the epoch, or None while another deployment holds the lease. A failed try closes
        the connection it used."""
        fresh = conn is None or conn.closed
        if fresh:
            conn = connect(self._url)
        try:
            if fresh:
                migrate(conn)
            return conn, acquire_deployment(conn, self._deployment, self._lease)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise

    async def _bounded_try(self) -> int | None:
        """``_try`` in a daemon thread, given up after ``shard_lease_seconds`` (``TimeoutError``).
        A given-up thread keeps its connection (a libpq connection is never used by two threads
        at once) and closes it if it ever returns."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Any, int | None]] = loop.create_future()
        given_up = threading.Event()

        def settle(result: tuple[Any, int | None] | None, error: BaseException | None) -> None:
            if answer.done():
                return
            if result is not None:
                answer.set_result(result)
            else:
                answer.set_exception(error or RuntimeError("no answer"))

        def work(conn: Any) -> None:
            result: tuple[Any, int | None] | None = None
            error: BaseException | None = None
            try:
                result = self._try(conn)
            except BaseException as exc:  # noqa: BLE001 - carried to the loop, raised there
                error = exc
            if result is not None and given_up.is_set():  # too late: nobody will use it
                with contextlib.suppress(Exception):
                    result[0].close()
                return
            with contextlib.suppress(RuntimeError):  # the loop is gone: the actor stopped
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=work, args=(self._conn,), daemon=True,
                         name="herald-deployment-lease").start()
        try:
            self._conn, epoch = await asyncio.wait_for(asyncio.shield(answer), self._lease)
        except TimeoutError:
            given_up.set()
            self._conn = None  # its thread's now: the next try starts on a new one
            answer.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise
        return epoch

    async def run(self) -> None:
        while True:
            try:
                epoch = await self._bounded_try()
            except Exception as exc:  # noqa: BLE001 - the database is away or not answering
                log.warning("deployment lease: %s", type(exc).__name__)
                self._conn = None  # closed by the failed try, or left to a given-up one
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
