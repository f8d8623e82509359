"""The rollup ``herald up`` runs by itself every ``HERALD_ROLLUP_SECONDS``, in a thread of its
driver: the database's rollup or the segments' one; on a database shared by an active and a
standby deployment, only the active one's."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from herald.analytics_store import AnalyticsStore
from herald.config import Settings
from herald.errors import ConfigError
from jobs.database_rollup import rollup_database
from jobs.rollup import rollup, segments_destination
from jobs.run_report import DATABASE, RollupCancelled, RollupReport

log = logging.getLogger("herald.rollup")


def scheduled_job(settings: Settings) -> Callable[..., RollupReport]:
    """The run ``herald up`` repeats: the database's rollup or the segments' one. On a database
    shared by an active and a standby deployment only the active one rolls (the Parquet is
    where the active one's report reads it)."""
    database_url, analytics_uri = settings.database_url, settings.analytics_uri

    def job(data_dir: Path, *, retention_days: float,
            cancel: threading.Event | None = None) -> RollupReport:
        if database_url is not None:
            if not _active(database_url, settings.deployment_id, settings.shard_lease_seconds):
                return RollupReport(source=DATABASE)
            return rollup_database(database_url, AnalyticsStore.locate(data_dir, analytics_uri),
                                   cancel=cancel)
        return rollup(data_dir, retention_days=retention_days, cancel=cancel,
                      analytics_dir=segments_destination(data_dir, analytics_uri))
    return job


def _active(database_url: str, deployment_id: str | None, lease_seconds: float) -> bool:
    """Whether ``deployment_id`` holds the database's deployment lease (None: not a
    deployment, e.g. ``herald rollup`` by hand, which always runs)."""
    if deployment_id is None:
        return True
    from herald.pg_connect import connect
    from herald.pg_leases import active_deployment

    with connect(database_url) as conn:
        return active_deployment(conn, lease_seconds) == deployment_id


class RollupScheduler:
    """Runs the rollup every ``every_seconds`` in a thread of the driver; 0 means never."""

    def __init__(self, data_dir: Path, every_seconds: float, retention_days: float,
                 job: Callable[..., RollupReport] = rollup) -> None:
        self.data_dir, self.every_seconds, self.retention_days = data_dir, every_seconds, retention_days
        self.last_report: RollupReport | None = None
        self._job = job
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RollupScheduler:
        return cls(settings.data_dir, settings.rollup_seconds, settings.retention_days,
                   scheduled_job(settings))

    def start(self) -> RollupScheduler:
        if self.every_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="herald-rollup", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop now: a run in progress gives up at its next step (its files are staged only)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                self.last_report = self._job(self.data_dir, retention_days=self.retention_days,
                                             cancel=self._stop)
                log.info("%s", self.last_report.summary())
            except RollupCancelled:
                return
            except ConfigError as exc:  # the settings will not change while herald up runs
                log.error("rollup off: %s", exc)
                return
            except Exception:  # the next period tries again; herald up stays up
                log.exception("rollup failed; trying again in %.0f s", self.every_seconds)
