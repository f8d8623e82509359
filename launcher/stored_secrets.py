"""Secrets Herald makes once and keeps for the deployment (``herald.deployment_store``: the data
dir, mode 0600, or the database every deployment on it shares): the dev API key, the admin key,
the browser-token secret, the unsubscribe-link secret. Keys given by the environment
(``HERALD_API_KEYS``, ``HERALD_ADMIN_KEY``, ``HERALD_BROWSER_SECRET``,
``HERALD_UNSUBSCRIBE_SECRET``) are used instead, and these are then not made at all."""

from __future__ import annotations

import secrets

from herald.data_dir import ADMIN_KEY, BROWSER_SECRET, DEV_API_KEY, UNSUBSCRIBE_SECRET
from herald.deployment_store import DeploymentStore


def stored_secret(store: DeploymentStore, name: str, prefix: str = "") -> str:
    """The secret kept under ``name``, made (``prefix`` + 24 random bytes) the first time; two
    deployments starting together on one database get the same one."""
    return store.get_or_create(name, lambda: prefix + secrets.token_urlsafe(24))


def dev_api_key(store: DeploymentStore) -> str:
    return stored_secret(store, DEV_API_KEY, "hk_dev_")


def dev_admin_key(store: DeploymentStore) -> str:
    """The admin console's key in dev mode when ``HERALD_ADMIN_KEY`` is unset."""
    return stored_secret(store, ADMIN_KEY, "hk_admin_")


def browser_secret(store: DeploymentStore) -> str:
    """The browser-token secret when ``HERALD_BROWSER_SECRET`` is unset."""
    return stored_secret(store, BROWSER_SECRET)


def unsubscribe_secret(store: DeploymentStore) -> str:
    """The unsubscribe-link secret when ``HERALD_UNSUBSCRIBE_SECRET`` is unset."""
    return stored_secret(store, UNSUBSCRIBE_SECRET)
