"""Owners on a shared PostgreSQL (herald.pg_leases): the active deployment, fenced shard owners.

Leases are short here (0.5 s) so that expiry is seen; the clock that decides is the database's.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from herald import pg_leases
from herald.errors import Fenced
from herald.pg_schema import SchemaTooNew
from herald.pg_storage import PostgresStorage
from herald.record import Record
from tests.support import fenced_owner
from tests.support.pg_shards import ShardDatabases, accepted, owned_storage
from tests.unit.conftest import lane, make_notification, make_shard

ROOT = Path(__file__).resolve().parents[2]

LEASE = 0.5


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as connection:
        yield connection


def expire() -> None:
    time.sleep(LEASE + 0.15)


def shard_owner(url: str, deployment: str, shard: int = 0, lease: float = LEASE,
                process: str = "") -> PostgresStorage:
    """A storage of ``deployment`` (one of its processes), not yet owning ``shard``."""
    return PostgresStorage(url, shard, holder=pg_leases.holder_name(deployment) + process,
                           deployment_id=deployment, lease_seconds=lease)


def record(seq: int = 1) -> Record:
    return Record.new(make_notification(), seq)


def test_one_active_deployment_until_its_lease_runs_out(conn: psycopg.Connection) -> None:
    assert pg_leases.active_deployment(conn, LEASE) is None
    assert pg_leases.acquire_deployment(conn, "blue", LEASE) == 1
    assert pg_leases.acquire_deployment(conn, "blue", LEASE) == 1  # ours: renewed, same epoch
    assert pg_leases.acquire_deployment(conn, "green", LEASE) is None
    assert pg_leases.active_deployment(conn, LEASE) == "blue"
    expire()
    assert pg_leases.active_deployment(conn, LEASE) is None
    assert pg_leases.acquire_deployment(conn, "green", LEASE) == 2  # a new holder: epoch + 1
    assert pg_leases.renew(conn, pg_leases.DEPLOYMENT, "green", 2)
    assert not pg_leases.renew(conn, pg_leases.DEPLOYMENT, "blue", 1)
    assert pg_leases.active_deployment(conn, LEASE) == "green"


def test_a_released_lease_is_taken_at_once(conn: psycopg.Connection) -> None:
    assert pg_leases.acquire_deployment(conn, "blue", 60) == 1
    pg_leases.release(conn, pg_leases.DEPLOYMENT, "green", 1)  # not green's to release
    assert pg_leases.acquire_deployment(conn, "green", 60) is None
    pg_leases.release(conn, pg_leases.DEPLOYMENT, "blue", 1)
    assert pg_leases.active_deployment(conn, 60) is None
    assert pg_leases.acquire_deployment(conn, "green", 60) == 2


def test_a_shard_is_taken_only_by_the_active_deployment(conn: psycopg.Connection) -> None:
    assert pg_leases.acquire_shard(conn, 0, "blue/h:1", "blue", LEASE) is None  # none active
    assert pg_leases.acquire_deployment(conn, "blue", LEASE) == 1
    assert pg_leases.acquire_shard(conn, 0, "blue/h:1", "blue", LEASE) == 1
    # The standby cannot take a shard, even a free one, while blue is active.
    assert pg_leases.acquire_shard(conn, 1, "green/h:2", "green", LEASE) is None
    assert pg_leases.acquire_shard(conn, 0, "green/h:2", "green", LEASE) is None


def test_a_restarted_owner_of_the_same_deployment_takes_over_at_once(
        conn: psycopg.Connection) -> None:
    assert pg_leases.acquire_deployment(conn, "blue", 60) == 1
    assert pg_leases.acquire_shard(conn, 3, "blue/h:1", "blue", 60) == 1
    assert pg_leases.acquire_shard(conn, 3, "blue/h:2", "blue", 60) == 2  # no wait
    assert not pg_leases.renew(conn, "shard-3", "blue/h:1", 1)  # the old one is fenced
    assert pg_leases.renew(conn, "shard-3", "blue/h:2", 2)
    # A deployment whose name is a prefix of blue's is another deployment.
    assert pg_leases.acquire_shard(conn, 3, "blu/h:3", "blu", 60) is None


def test_another_deployment_waits_for_the_shard_lease_to_run_out(
        conn: psycopg.Connection) -> None:
    assert pg_leases.acquire_deployment(conn, "blue", LEASE) == 1
    assert pg_leases.acquire_shard(conn, 0, "blue/h:1", "blue", 60) == 1  # renewed lately
    expire()  # blue's deployment lease ran out; its shard owner renewed just now
    assert pg_leases.renew(conn, "shard-0", "blue/h:1", 1)
    assert pg_leases.acquire_deployment(conn, "green", LEASE) == 2
    assert pg_leases.acquire_shard(conn, 0, "green/h:2", "green", LEASE) is None
    expire()
    assert pg_leases.acquire_deployment(conn, "green", LEASE) == 2
    assert pg_leases.acquire_shard(conn, 0, "green/h:2", "green", LEASE) == 2
    assert not pg_leases.renew(conn, "shard-0", "blue/h:1", 1)


def test_a_storage_writes_only_while_it_owns_its_shard(pg_url: str) -> None:
    blue = shard_owner(pg_url, "blue", lease=60)
    with pytest.raises(Fenced):  # never acquired
        blue.write([record(1)], [])
    assert not blue.acquire()  # blue is not the active deployment
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pg_leases.acquire_deployment(conn, "blue", 60)
    assert blue.acquire() and blue.epoch == 1
    blue.write([record(1)], [])
    blue.renew()
    assert blue.commits == 1
    blue.release()
    with pytest.raises(Fenced):
        blue.write([record(2)], [])
    assert [r.seq for r in blue.load_live()] == [1]
    blue.close()


def test_a_fenced_storage_writes_nothing_and_stays_fenced(pg_url: str) -> None:
    old = owned_storage(pg_url, 5, deployment="blue")
    kept = record(1)
    old.write([kept], [])
    old.claim([("acme", "k0", kept.tag)], 1.0)
    new = shard_owner(pg_url, "blue", 5, lease=3600, process="+restarted")
    assert new.acquire() and new.epoch == 2
    commits = old.commits
    writes = [
        lambda: old.write([record(2)], [], receipts={kept.tag: None}),
        lambda: old.claim([("acme", "k1", kept.tag)], 1.0),
        lambda: old.delete_final(1e12, 100, 1e12),
        lambda: old.delete_events(1_000),
        lambda: old.admin().save_pause("EMAIL", 1.0),
        old.renew,
    ]
    for attempt in writes:
        with pytest.raises(Fenced):
            attempt()
    assert old.commits == commits and old.epoch is None
    assert [r.tag for r in new.load_live()] == [kept.tag]
    assert new.claimed([("acme", "k0"), ("acme", "k1")]) == {("acme", "k0"): kept.tag}
    assert new.admin().load_pauses() == {}
    new.write([record(3)], [])  # the new owner writes
    for storage in (old, new):
        storage.close()


def test_two_owners_of_one_shard_never_both_commit(pg_url: str) -> None:
    """Two processes of one deployment keep taking a shard from each other while writing: an
    owner never commits once another took the shard, so in commit order (the delivery log's
    ids) the epochs never go back."""
    storages = [shard_owner(pg_url, "blue", 7, lease=60, process=f"+{i}") for i in range(2)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        pg_leases.acquire_deployment(conn, "blue", 60)
    told: dict[str, int] = {}  # tag → the epoch its writer was told it committed under
    start = threading.Barrier(2)

    def run(me: int) -> None:
        storage = storages[me]
        start.wait()
        for round_ in range(40):
            if round_ % 5 == me * 2:
                storage.acquire()
            epoch, written = storage.epoch, record(100 * me + round_)
            try:
                storage.write([written], [], [accepted(written)])
            except Fenced:
                continue
            assert epoch is not None
            told[written.tag] = epoch

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.tag for r in storages[0].load_live()} == set(told)  # told "written" ⇔ stored
    in_commit_order = [told[event.tag] for _, event in storages[0].read_events(0, 1_000)]
    assert len(in_commit_order) == len(told)
    assert in_commit_order == sorted(in_commit_order)
    assert len(set(in_commit_order)) >= 2  # the shard did change hands between writes
    for storage in storages:
        storage.close()


def test_a_database_of_a_newer_herald_is_refused(pg_databases: ShardDatabases) -> None:
    url = pg_databases.fresh()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE herald_schema SET version = version + 1")
    with pytest.raises(SchemaTooNew, match="upgrade Herald"):
        shard_owner(url, "blue")
    pg_databases.drop(url)


def test_an_owner_paused_past_its_lease_is_fenced_when_it_wakes(
        pg_url: str, tmp_path: Path) -> None:
    """Process A (deployment blue) owns shard 0 and has leased 5 notifications; it is stopped
    (SIGSTOP) past its lease; B (deployment green) takes the deployment and the shard and
    leases the rest; A wakes (SIGCONT) and leases again: refused. No notification is leased by
    both: B's leases stand as B made them."""
    go = tmp_path / "go"
    owner = subprocess.Popen([sys.executable, "-m", "tests.support.fenced_owner", pg_url, str(go)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        a_leased = dict(orjson.loads(owner.stdout.readline())["leased"])
        assert len(a_leased) == 5
        owner.send_signal(signal.SIGSTOP)
        b = shard_owner(pg_url, "green", lease=fenced_owner.LEASE_SECONDS)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            deadline = time.monotonic() + 10
            while pg_leases.acquire_deployment(conn, "green", fenced_owner.LEASE_SECONDS) is None \
                    or not b.acquire():
                assert time.monotonic() < deadline, "green never took over"
                time.sleep(0.05)
        shard = make_shard(b, now=time.time())
        b_leased = {d.tag: d.lease for d in shard.lease(lane("EMAIL"), 100, time.time(), 60.0)}
        shard.flush()
        assert len(b_leased) == 15 and not set(a_leased) & set(b_leased)

        go.touch()
        owner.send_signal(signal.SIGCONT)
        assert orjson.loads(owner.stdout.readline()) == {"fenced": True}
        assert owner.wait(10) == 0
        for tag, lease in {**a_leased, **b_leased}.items():
            stored = b.get(tag)
            assert stored is not None and stored.status == "sending"
            assert (stored.lease_token, stored.attempts) == (lease, 0)
        b.write([], [])  # still the owner
        b.renew()
        b.close()
    finally:
        if owner.poll() is None:
            owner.send_signal(signal.SIGCONT)
            owner.kill()
            owner.wait()
