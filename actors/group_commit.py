"""Group commit: the changes of every call a shard takes in one round of its event loop share one
transaction, and nobody is answered before the commit that holds their change.

The first caller schedules one write for the end of the loop's current round, or with a window
(``HERALD_COMMIT_WINDOW_MS``) that much later; every call that changes the shard meanwhile
(intake, leases, acks, renewals, receipts, the timer) joins it, so at load one transaction
carries the work of many calls, on SQLite and PostgreSQL alike, with their durability unchanged
(``synchronous=FULL``; ``synchronous_commit`` on). A batch of ``FULL_BATCH`` changes commits at
once: the window trades a little latency for fewer commits, never throughput.

A failed commit fails every call in it. On SQLite memory is rebuilt from the file (none of the
calls happened) and writes that keep failing end the process, which Ray restarts from disk. On
PostgreSQL a failed write may have committed or not (a connection lost in COMMIT), and a fenced
one means another owner has the shard: either way the shard is given up (``lose``) and started
again from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from herald.errors import Fenced, Unavailable
from herald.queue import QueueShard
from herald.shard_health import ShardCondition

log = logging.getLogger("herald.queue")
#: Consecutive failed writes over at least this long: the shard restarts from its disk.
WEDGED_AFTER_SECONDS = 10.0

#: Changes that make a batch full: it commits without waiting for the rest of its window.
FULL_BATCH = 500
#: Give the shard up: (the shard, how it is now, why).
Lose = Callable[[QueueShard, ShardCondition, str], None]


class GroupCommit:
    """One shard's commits; ``committed`` is told of each one that succeeded."""

    def __init__(self, shard_id: int, *, reload_on_failure: bool, lose: Lose,
                 committed: Callable[[QueueShard], None], window_seconds: float = 0.0) -> None:
        self._shard_id = shard_id
        self._window = window_seconds
        self._timer: asyncio.Handle | None = None
        self._reload = reload_on_failure
        self._lose = lose
        self._committed = committed
        self._batch: asyncio.Future[None] | None = None
        self._failing_since: float | None = None

    async def commit(self, shard: QueueShard) -> None:
        """Return once this call's changes are durable, or raise ``Unavailable``."""
        batch = self._batch
        loop = asyncio.get_running_loop()
        if batch is None:
            batch = self._batch = loop.create_future()
            self._timer = (loop.call_later(self._window, self._write, shard) if self._window
                           else loop.call_soon(self._write, shard))
        elif self._window and shard.unflushed() >= FULL_BATCH and self._timer is not None:
            self._timer.cancel()  # full: commit at the end of this round
            self._timer = loop.call_soon(self._write, shard)
        await asyncio.shield(batch)  # one caller cancelled must not cancel the others' commit

    async def settled(self) -> None:
        """Wait for the commit in flight, if any (whatever its outcome): a read answers from
        committed state only."""
        if self._batch is not None:
            await asyncio.wait([self._batch])

    def _write(self, shard: QueueShard) -> None:
        batch, self._batch, self._timer = self._batch, None, None
        assert batch is not None
        try:
            self._flush(shard)
        except Unavailable as exc:
            batch.set_exception(exc)
            batch.add_done_callback(lambda f: f.exception())  # retrieved even if all left
        else:
            batch.set_result(None)

    def _flush(self, shard: QueueShard) -> None:
        """Make every change since the last write durable, or raise ``Unavailable``."""
        try:
            shard.flush()
        except Fenced as exc:
            self._lose(shard, ShardCondition.STANDBY, f"fenced: {exc}")
            raise Unavailable(f"shard {self._shard_id} has another owner", retry_after=2.0) from None
        except Exception as exc:  # noqa: BLE001 - any storage failure: roll back, maybe restart
            if self._reload:  # the outcome may be unknown: start over from the database
                self._lose(shard, ShardCondition.DOWN, f"write failed: {type(exc).__name__}")
                raise Unavailable(f"shard {self._shard_id} cannot write: {type(exc).__name__}",
                                  retry_after=2.0) from None
            now = time.monotonic()
            self._failing_since = self._failing_since or now
            log.error("shard write failed", extra={"shard": self._shard_id, "error": repr(exc)})
            if now - self._failing_since >= WEDGED_AFTER_SECONDS:
                log.critical("shard writes keep failing; restarting from disk",
                             extra={"shard": self._shard_id})
                os._exit(70)  # Ray restarts the actor; memory is rebuilt from what is stored
            raise Unavailable(f"shard {self._shard_id} cannot write: {type(exc).__name__}",
                              retry_after=2.0) from None
        self._failing_since = None
        self._committed(shard)
