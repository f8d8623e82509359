"""The shard a QueueActor serves, and how it got there: starting, up, down (and why), or standby.

Start-up is its own state: the actor's constructor returns at once and the shard rebuilds its
memory in a thread, so the Supervisor's health check is answered during a long recovery; every
other call waits for ``ready``. A start that fails (a locked file, EIO, a full disk, a database
away) is tried again with backoff in the same process while ``health`` says the shard is down
and why (``herald.shard_health``); calls meanwhile answer ``Unavailable``.

With PostgreSQL the shard is served only by the owner of its lease (``actors.shard_store``):
until this deployment is the active one and the lease is free, the shard is a standby and asks
again every ``STANDBY_POLL_SECONDS``. Once up it renews the lease (every commit does too); when
the lease turns out to be someone else's (fenced) or a write's outcome is unknown, ``lose``
drops the shard at once — it never leases or acks again — and starts over from the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from actors.log_shipper import LogShipper
from actors.shard_store import NotOwner, open_storage
from herald.channels import Channel
from herald.config import Settings
from herald.data_dir import DataDir
from herald.errors import Fenced, Unavailable
from herald.queue import QueueShard
from herald.recipient_book import categories
from herald.shard_health import ShardCondition, ShardHealth, start_delay
from herald.storage import Storage

log = logging.getLogger("herald.queue")
#: A standby shard asks for its lease this often.
STANDBY_POLL_SECONDS = 1.0


class ServedShard:
    """``shard`` once started (None before, and while down or a standby); ``on_up`` is told
    each time it comes up."""

    def __init__(self, shard_id: int, settings: Settings, on_up: Callable[[], None]) -> None:
        self.shard_id = shard_id
        self._settings = settings
        self._on_up = on_up
        self.shard: QueueShard | None = None
        self.storage: Storage | None = None
        #: The delivery log's shipper (SQLite only: with PostgreSQL the log stays in the
        #: database until the rollup reads it).
        self.shipper: LogShipper | None = None
        self.health = ShardHealth(shard_id, ShardCondition.STARTING)
        self._first_try = asyncio.Event()  # set once the first start has succeeded or failed
        self._renew_at = 0.0  # PostgreSQL: when the lease is renewed next (monotonic)
        self._commits_before = 0  # commits of the stores this process opened before this one
        # Async actors run __init__ on their event loop: recover in the background.
        self._starting = asyncio.get_running_loop().create_task(self._start())

    @property
    def commits(self) -> int:
        """Store commits since this process started (``herald_store_commits_total``)."""
        return self._commits_before + (self.storage.commits if self.storage is not None else 0)

    async def ready(self) -> QueueShard:
        """The started shard; ``Unavailable`` (503) while down or a standby."""
        if self.shard is None:
            await self._first_try.wait()
        if self.shard is None:
            state = "a standby" if self.health.condition is ShardCondition.STANDBY else "down"
            raise Unavailable(f"shard {self.shard_id} is {state}: {self.health.reason}",
                              retry_after=start_delay(self.health.failed_starts))
        return self.shard

    async def _start(self) -> None:
        """Open the shard; after a failure try again with backoff, keeping this process: Ray
        would restart an exited actor at once and without end, callers of a restarting actor
        wait instead of hearing 503, and why it failed would be lost."""
        started = time.monotonic()
        while True:
            try:
                shard = await asyncio.to_thread(self._open)
            except NotOwner as exc:  # PostgreSQL: another deployment is active, or owns it
                if self.health.condition is not ShardCondition.STANDBY:
                    log.info("shard is a standby", extra={"shard": self.shard_id})
                self.health = ShardHealth(self.shard_id, ShardCondition.STANDBY, str(exc),
                                          self.health.since or time.time())
                self._first_try.set()
                await asyncio.sleep(STANDBY_POLL_SECONDS)
                continue
            except Exception as exc:  # noqa: BLE001 - any failure to start: say it, try again
                failed = self.health.failed_starts + 1
                reason = f"{type(exc).__name__}: {exc}"[:300]
                self.health = ShardHealth(self.shard_id, ShardCondition.DOWN, reason,
                                          self.health.since or time.time(), failed)
                delay = start_delay(failed)
                log.error("shard start failed; trying again in %.0fs", delay,
                          extra={"shard": self.shard_id, "error": reason, "failures": failed})
                self._first_try.set()
                await asyncio.sleep(delay)
                continue
            break
        self.shard = shard
        self.health = ShardHealth(self.shard_id, ShardCondition.UP)
        self._first_try.set()
        self._on_up()
        log.info("shard ready", extra={"shard": self.shard_id, "seconds": time.monotonic() - started,
                                       "live": shard.live_count()})

    def _open(self) -> QueueShard:
        settings = self._settings
        storage = open_storage(settings, self.shard_id)
        try:
            shipper = None if settings.database_url else LogShipper(
                storage, DataDir(settings.data_dir), self.shard_id,
                settings.log_rotate_seconds, settings.log_rotate_rows)
            policies = {c: settings.retry_policy(c) for c in Channel}
            shard = QueueShard(storage, policies, time.time(),
                               gateways=settings.pools.get(Channel.BROWSER.key, 1),
                               memory_window=settings.memory_window,
                               required_categories=categories(settings.required_categories),
                               sms_sender=settings.twilio_from)
            shard.open_admin()  # here, off the event loop: an old big file gets its indexes once
        except BaseException:
            storage.close()  # the next try opens its own connection
            raise
        self.shipper, self.storage = shipper, storage
        self.committed()
        return shard

    def committed(self) -> None:
        """A commit renewed the lease (PostgreSQL): the next renewal is a third of it away."""
        self._renew_at = time.monotonic() + self._settings.shard_lease_seconds / 3

    def renew(self, shard: QueueShard) -> None:
        """PostgreSQL: renew the lease when due; fenced or unreachable → ``lose`` and raise
        ``Unavailable``."""
        storage = self.storage
        if self._settings.database_url is None or storage is None \
                or time.monotonic() < self._renew_at:
            return
        try:
            storage.renew()  # type: ignore[attr-defined]
        except Fenced as exc:
            self.lose(shard, ShardCondition.STANDBY, f"fenced: {exc}")
            raise Unavailable(str(exc), retry_after=2.0) from None
        except Exception as exc:  # noqa: BLE001 - the database is gone: start over from it
            self.lose(shard, ShardCondition.DOWN, f"lease renewal failed: {type(exc).__name__}")
            raise Unavailable(str(exc), retry_after=2.0) from None
        self.committed()

    def lose(self, shard: QueueShard, condition: ShardCondition, reason: str) -> None:
        """Stop serving ``shard`` at once and start over from the database. Calls meanwhile
        answer 503; in-flight ones hold the old object, whose writes are fenced."""
        if self.shard is not shard:
            return
        log.error("shard stops serving: %s", reason, extra={"shard": self.shard_id})
        self.shard = None
        self.health = ShardHealth(self.shard_id, condition, reason, time.time())
        storage, self.storage = self.storage, None
        if storage is not None:
            self._commits_before += storage.commits
            try:
                storage.close()
            except Exception:
                log.debug("closing a lost store failed", exc_info=True)
        self._starting = asyncio.get_running_loop().create_task(self._start())

    def close(self) -> None:
        """Before the actor goes: the last delivery-log segment closed (SQLite), or the lease
        given up (PostgreSQL) so the next owner need not wait for it to expire."""
        if self.shipper is not None:
            self.shipper.close()
        if self._settings.database_url is not None and self.storage is not None:
            storage, self.storage, self.shard = self.storage, None, None
            storage.release()  # type: ignore[attr-defined]
