"""The deployment lease over a real PostgreSQL: one deployment of two is active, and a database
that stops answering (its processes stopped: no error ever comes) costs a try, not the lease loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from actors.deployment_lease import DeploymentLease
from herald.config import Settings
from tests.support.postgres import PostgresServer, pg_bin

pytestmark = pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (make pg-deps)")
LEASE = 1.0


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    server = PostgresServer.create(durable=False)
    try:
        yield server
    finally:
        server.destroy()


def lease(url: str, deployment: str) -> DeploymentLease:
    return DeploymentLease(Settings(database_url=url, deployment_id=deployment,
                                    shard_lease_seconds=LEASE))


async def test_one_of_two_deployments_is_active_and_the_other_takes_over_after_a_release(
    server: PostgresServer,
) -> None:
    url = server.fresh_database("deployments")
    first, second = lease(url, "first"), lease(url, "second")
    assert await first._bounded_try() == 1
    assert await second._bounded_try() is None
    assert await first._bounded_try() == 1  # a renewal keeps the epoch
    first.epoch = 1
    await asyncio.to_thread(first.release)
    assert await second._bounded_try() == 2  # at once, not after the lease time


async def test_a_try_on_a_database_that_stopped_answering_is_given_up_after_the_lease_time(
    server: PostgresServer,
) -> None:
    url = server.fresh_database("hung")
    holder = lease(url, "holder")
    assert await holder._bounded_try() == 1  # connected, and the connection kept
    server.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(holder._bounded_try(), LEASE * 10)  # never for ever
        assert time.monotonic() - started < LEASE * 3
    finally:
        server.thaw()
    # The given-up connection is not used again: the next try, on a new one, holds the lease.
    assert await asyncio.wait_for(holder._bounded_try(), 30) == 1
