"""Which store a deployment keeps its values in (``herald.deployment_store``): the database when
``HERALD_DATABASE_URL`` is set, else the data dir. The one place that chooses."""

from __future__ import annotations

from herald.config import Settings
from herald.deployment_store import DataDirStore, DeploymentStore
from herald.pg_deployment_store import PostgresStore


def open_store(settings: Settings) -> DeploymentStore:
    """The store this deployment keeps its values in. Nothing is opened until first use."""
    if settings.database_url:
        return PostgresStore(settings.database_url)
    return DataDirStore(settings.data_dir)
