"""What only PostgreSQL's storage does: shards sharing tables, lost connections, writes in doubt,
multi-host URLs, the search's time bound. (Everything else it promises is tested on every
backend by the ``storage`` fixture.)"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from herald import admin_queries
from herald.errors import StoreInDoubt, StoreUnavailable, ValidationError
from herald.outcome import Outcome
from herald.pg_storage import PostgresStorage
from herald.record import Record
from herald.search import SearchQuery
from herald.status import Status
from tests.support.pg_shards import ShardDatabases, accepted, owned_storage
from tests.unit.conftest import T0, make_notification, make_shard


def record(seq: int, **changes: object) -> Record:
    made = Record.new(make_notification("EMAIL", btag=f"k{seq}", now=T0 + seq), seq)
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def fill(storage: PostgresStorage, seqs: range) -> list[Record]:
    """Records of ``seqs``: each with an idempotency key, an event, a held receipt, a claim."""
    made = [record(seq) for seq in seqs]
    storage.write(made, [], [accepted(r) for r in made],
                  {r.tag: Outcome(r.tag, "delivered", "smtp") for r in made})
    storage.claim([(r.tenant, f"claim{r.seq}", r.tag) for r in made], T0)
    return made


def backend_pid(storage: PostgresStorage) -> int:
    [(pid,)] = storage.query("SELECT pg_backend_pid()", ())
    return int(pid)


def terminate(url: str, pid: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_shards_share_the_tables_and_see_only_their_own_rows(pg_url: str) -> None:
    one, two = owned_storage(pg_url, 1), owned_storage(pg_url, 2)
    mine, theirs = fill(one, range(1, 4)), fill(two, range(10, 12))
    one.admin().save_pause("SMS", T0)
    assert [r.tag for r in one.load_live()] == [r.tag for r in mine]
    assert one.get(theirs[0].tag) is None and two.get(theirs[0].tag) == theirs[0]
    assert one.existing([r.tag for r in mine + theirs]) == {r.tag for r in mine}
    assert one.find_idempotent(theirs[0].tenant, "k10") is None
    assert (one.max_seq(), two.max_seq()) == (3, 11)
    assert [e.tag for _, e in one.read_events(0, 100)] == [r.tag for r in mine]
    assert {tag for tag, _ in two.load_receipts()} == {r.tag for r in theirs}
    assert one.claimed([(theirs[0].tenant, "claim10")]) == {}
    assert two.admin().load_pauses() == {} and one.admin().load_pauses() == {"SMS": T0}
    assert [r.tag for r in one.admin().search(SearchQuery())] == [r.tag for r in reversed(mine)]
    one.write([], [dataclasses.replace(r, status=Status.SENT) for r in mine])
    two.write([], [dataclasses.replace(r, status=Status.SENT) for r in theirs])
    assert one.admin().count_status(Status.SENT) == 3
    assert one.delete_final(T0 + 100, 100, T0 + 1) == 3
    one.delete_events(1_000_000)
    assert two.max_seq() == 11 and len(two.read_events(0, 100)) == 2
    assert len(two.claimed([(r.tenant, f"claim{r.seq}") for r in theirs])) == 2
    for storage in (one, two):
        storage.close()


def test_a_lost_connection_fails_one_call_and_the_next_reconnects(pg_url: str) -> None:
    storage = owned_storage(pg_url)
    kept = record(1)
    storage.write([kept], [])
    terminate(pg_url, backend_pid(storage))
    with pytest.raises(StoreUnavailable) as lost:
        storage.get(kept.tag)
    assert not isinstance(lost.value, StoreInDoubt)
    assert storage.get(kept.tag) == kept
    terminate(pg_url, backend_pid(storage))
    with pytest.raises(StoreUnavailable) as failed:  # broke before COMMIT: nothing written
        storage.write([record(2)], [])
    assert not isinstance(failed.value, StoreInDoubt)
    storage.write([record(3)], [])  # reconnected, still the owner
    assert [r.seq for r in storage.load_live()] == [1, 3]
    storage.reconnect()
    assert storage.max_seq() == 3
    storage.close()


class StandbyWait:
    """Makes the test server's commits wait for a synchronous standby that never comes; only
    sessions that ask for ``synchronous_commit = on`` (the URL ``sessions``) wait, the server's
    own setting being off. ``start`` makes them wait from then on."""

    def __init__(self, databases: ShardDatabases) -> None:
        self.server = databases.server
        self.url = databases.emptied() + "?options=-c%20synchronous_commit%3Don"

    def _standby_names(self, names: str | None) -> None:
        if names is None:
            self.server.sql("ALTER SYSTEM RESET synchronous_standby_names")
        else:
            self.server.sql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        self.server.sql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while self.server.sql("SHOW synchronous_standby_names") != (names or ""):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)  # every backend has the new setting too

    def start(self) -> None:
        self._standby_names("nobody")

    def stop(self) -> None:
        self._standby_names(None)


@pytest.fixture
def standby_wait(pg_databases: ShardDatabases) -> Iterator[StandbyWait]:
    wait = StandbyWait(pg_databases)
    try:
        yield wait
    finally:
        wait.stop()


def test_a_write_whose_commit_was_cut_off_is_in_doubt(standby_wait: StandbyWait) -> None:
    """The connection breaks while COMMIT waits: the write may be stored (here it is, locally
    committed), so the caller is told it is in doubt, not that it failed."""
    storage = owned_storage(standby_wait.url)
    pid, written = backend_pid(storage), record(1)
    standby_wait.start()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            storage.write([written], [])
        except BaseException as exc:  # noqa: BLE001 - what the writer was told, for the test
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    with psycopg.connect(standby_wait.url.split("?")[0], autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while conn.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone() != ("SyncRep",):
            if time.monotonic() > deadline:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                pytest.fail("the commit never waited for the standby")
            time.sleep(0.01)
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    writer.join(10)
    standby_wait.stop()
    assert len(failures) == 1 and isinstance(failures[0], StoreInDoubt)
    assert storage.get(written.tag) == written  # the next call reconnected: it was committed
    storage.close()


def test_the_url_goes_to_libpq_unchanged_several_hosts_included(
        pg_databases: ShardDatabases) -> None:
    """The first host is down: libpq goes on to the next, the read-write one."""
    url = pg_databases.emptied()
    host = f"127.0.0.1:{pg_databases.server.port}"
    several = url.replace(host, f"127.0.0.1:1,{host}") + "?target_session_attrs=read-write"
    storage = owned_storage(several)
    storage.write([record(1)], [])
    assert storage.max_seq() == 1
    storage.close()


def test_a_search_over_its_time_is_cancelled_and_the_next_one_runs(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shard = make_shard(owned_storage(pg_url))
    shard.enqueue([make_notification("EMAIL", now=T0 + i) for i in range(3000)], T0)
    shard.flush()
    query = SearchQuery(service="NOPE")
    monkeypatch.setattr(admin_queries, "SEARCH_SECONDS", 0.001)
    with pytest.raises(ValidationError, match="narrow it"):
        shard.scan(query, None)
    monkeypatch.setattr(admin_queries, "SEARCH_SECONDS", 2.0)
    assert shard.scan(query, None).records == []
    assert len(shard.scan(SearchQuery(limit=5), 100).records) == 5
