"""A shard owner in a process of its own, for the fencing test: deployment ``blue`` owns shard 0
of the database at argv[1], accepts 20 notifications and leases 5, prints them (one JSON line),
then renews its leases every 0.1 s as a live owner does (ignoring a refusal: the write after
it must be refused by the database itself). Once the file argv[2] exists it leases
again and prints what happened: ``{"fenced": true}`` when the write was refused, else what it
leased. (``python -m tests.support.fenced_owner URL GO_FILE``)"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import psycopg

from herald import pg_leases
from herald.errors import Fenced
from tests.support.pg_shards import owned_storage
from tests.unit.conftest import lane, make_notification, make_shard

DEPLOYMENT = "blue"
LEASE_SECONDS = 1.0


def main(url: str, go: Path) -> None:
    storage = owned_storage(url, 0, deployment=DEPLOYMENT, lease_seconds=LEASE_SECONDS)
    conn = psycopg.connect(url, autocommit=True)
    shard = make_shard(storage, now=time.time())
    shard.enqueue([make_notification("EMAIL", now=time.time(), uid=i) for i in range(20)],
                  time.time())
    shard.flush()

    def lease() -> list[tuple[str, float]]:
        leased = shard.lease(lane("EMAIL"), 5, time.time(), 60.0)
        shard.flush()
        return [(d.tag, d.lease) for d in leased]

    print(orjson.dumps({"leased": lease()}).decode(), flush=True)
    epoch = storage.epoch
    assert epoch is not None
    while not go.exists():
        # Renewed as the actor's timer would, but what a failed renewal says is not heeded
        # here: the write after the pause must be refused by the database itself.
        pg_leases.acquire_deployment(conn, DEPLOYMENT, LEASE_SECONDS)
        pg_leases.renew(conn, pg_leases.shard_lease(0), storage.holder, epoch)
        time.sleep(0.1)
    try:
        print(orjson.dumps({"leased": lease()}).decode(), flush=True)
    except Fenced:
        print(orjson.dumps({"fenced": True}).decode(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
