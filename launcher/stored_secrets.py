"""Secrets Herald makes once and keeps in its data dir (mode 0600): the dev API key, the admin
key, the browser-token secret."""

from __future__ import annotations

import secrets
from pathlib import Path


def stored_secret(data_dir: Path, name: str, prefix: str = "") -> str:
    """A secret kept in the data dir (made once, mode 0600): dev API key, browser secret…"""
    path = data_dir / name
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = prefix + secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def dev_api_key(data_dir: Path) -> str:
    return stored_secret(data_dir, "dev-api-key", "hk_dev_")


def dev_admin_key(data_dir: Path) -> str:
    """The admin console's key in dev mode when ``HERALD_ADMIN_KEY`` is unset."""
    return stored_secret(data_dir, "admin-key", "hk_admin_")
