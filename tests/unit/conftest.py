"""Helpers for the core's unit tests: valid notifications, shards, and every storage backend."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from herald.channels import Channel, Lane
from herald.memory_storage import MemoryStorage
from herald.models import validate_notification
from herald.notification import Notification
from herald.queue import QueueShard
from herald.retry import RetryPolicy
from herald.storage import SQLiteStorage, Storage
from tests.support.pg_shards import ShardDatabases, owned_storage
from tests.support.postgres import PostgresServer, pg_bin

T0 = 1_000_000.0
TENANT = "acme"

#: The fields each channel needs besides ``details.content`` (a valid recipient).
_CHANNEL_DETAILS: dict[str, dict[str, Any]] = {
    "BROWSER": {},
    "EMAIL": {"to": "bob@example.com", "subject": "Hello"},
    "SMS": {"to": "+14155550100"},
    "FAX": {"to": "+14155550199"},
}


def make_notification(
    channel: str = "BROWSER",
    *,
    tenant: str = TENANT,
    now: float = T0,
    uid: int | str = 76143021,
    btag: str | None = None,
    asap: str | None = None,
    priority: int | None = None,
    ttl: int | None = None,
    callback_url: str | None = None,
    shards: int = 1,
    **details: Any,
) -> Notification:
    """A notification as intake hands it to the queue: a valid payload through validation."""
    user: dict[str, Any] = {"uid": uid, "name": {"first": "Bob", "last": "Smith"}}
    if btag is not None:
        user["mq-uuid-btag"] = btag
    requester: dict[str, Any] = {"type": "WEB_APP_BACKEND", "service": "CM_DA_MESSAGE_SERVICE"}
    if asap is not None:
        requester["asap"] = asap
    if priority is not None:
        requester["priority"] = priority
    if callback_url is not None:
        requester["callback_url"] = callback_url
    body: dict[str, Any] = {"title": "New Message", "content": "Hi {user.name.first}"}
    body.update(_CHANNEL_DETAILS[channel])
    if ttl is not None:
        body["ttl"] = ttl
    body.update(details)
    raw = {"type": f"CM_{channel}", "user": user, "requester": requester, "details": body}
    return validate_notification(raw, tenant=tenant, now=now, shards=shards)


def lane(channel: str) -> Lane:
    """The lane a channel actor of ``channel`` (``"SMS"``, ``"BROWSER"``…) leases from (actor 0)."""
    return Lane.of_actor(Channel(channel), 0)


def make_shard(
    storage: Storage,
    now: float = T0,
    policies: Mapping[str, RetryPolicy] | None = None,
    seed: int = 0,
    memory_window: int = 20_000,
    keep_unpacked: int | None = None,
) -> QueueShard:
    """A shard with a seeded jitter source, so retry delays are reproducible."""
    return QueueShard(storage, policies or {}, now=now, rng=random.Random(seed),
                      memory_window=memory_window, keep_unpacked=keep_unpacked)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the unit tests' session (no fsync: what they test is not the disk);
    each test takes a database or a shard of its own on it."""
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (make pg-deps)")
    server = PostgresServer.create(durable=False)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def pg_databases(pg_server: PostgresServer) -> Iterator[ShardDatabases]:
    databases = ShardDatabases(pg_server)
    yield databases
    databases.close()


@pytest.fixture
def pg_url(pg_databases: ShardDatabases) -> str:
    """A database with Herald's schema and no rows (the session's, emptied for this test)."""
    return pg_databases.emptied()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Every storage backend in turn: one test runs against each (dramatiq's broker fixture)."""
    backend: Storage
    if request.param == "memory":
        backend = MemoryStorage()
    elif request.param == "sqlite":
        backend = SQLiteStorage(tmp_path / "shard.db", synchronous="OFF")
    else:
        backend = owned_storage(request.getfixturevalue("pg_url"))
    yield backend
    backend.close()
