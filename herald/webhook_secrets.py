"""Tenants' webhook signing secrets made by Herald: random ``whsec_`` secrets, kept in the data dir.

A tenant without an explicit ``HERALD_WEBHOOK_SECRETS`` entry gets a Standard Webhooks secret,
``whsec_`` + base64 of 32 random bytes, made once and kept in ``<data dir>/webhook-secrets.json``
(mode 0600, replaced atomically), never derived from the API key. ``rotate`` makes a new one and
keeps the old one for ``OVERLAP_SECONDS``: meanwhile callbacks carry both signatures, so a
receiver can switch at its own pace. The file is read again when it changes (a rotation by
``herald webhook-secret rotate`` reaches the running actors within ``RELOAD_SECONDS``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

#: The file in the data dir; one owner of the name.
FILE_NAME = "webhook-secrets.json"
PREFIX = "whsec_"
#: How long a rotated-out secret still signs callbacks (beside the new one).
OVERLAP_SECONDS = 24 * 3600.0
#: How often a reader looks at the file's mtime for a rotation.
RELOAD_SECONDS = 1.0
_VERSION = 1


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (Standard Webhooks asks for 24 to 64)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def standard_webhooks_secret(secret: str) -> str:
    """The ``whsec_…`` form a receiver gives ``standardwebhooks``: a ``whsec_`` secret as it is;
    any other (an operator's ``HERALD_WEBHOOK_SECRETS`` entry) is ``whsec_`` + base64 of its bytes."""
    if secret.startswith(PREFIX):
        return secret
    return PREFIX + base64.b64encode(secret.encode()).decode()


def hmac_key(secret: str) -> bytes:
    """The HMAC key of the Standard Webhooks signature: what ``standardwebhooks`` derives from
    ``standard_webhooks_secret(secret)``."""
    return base64.b64decode(standard_webhooks_secret(secret).removeprefix(PREFIX))


@dataclass(frozen=True, slots=True)
class TenantSecret:
    """A tenant's current secret and, for ``OVERLAP_SECONDS`` after a rotation, the one before."""

    current: str
    previous: str | None = None
    rotated_at: float = 0.0

    def previous_until(self) -> float | None:
        return self.rotated_at + OVERLAP_SECONDS if self.previous else None

    def signing(self, now: float) -> list[str]:
        """The secrets that sign a callback now: the current one first."""
        until = self.previous_until()
        if self.previous and until is not None and now < until:
            return [self.current, self.previous]
        return [self.current]

    def rotated(self, now: float, secret: str) -> TenantSecret:
        return TenantSecret(secret, self.current, now)


def secret_view(explicit: str, stored: TenantSecret | None, now: float) -> dict[str, object] | None:
    """What ``GET /v1/webhook-secret`` answers: the secret to verify with (``whsec_`` form) and,
    while it still signs, the previous one and until when; None if the tenant has none."""
    if explicit:
        return {"secret": standard_webhooks_secret(explicit), "previous": None,
                "previous_until": None}
    if stored is None:
        return None
    signing = stored.signing(now)
    previous = signing[1] if len(signing) > 1 else None
    return {"secret": stored.current, "previous": previous,
            "previous_until": stored.previous_until() if previous else None}


class SecretsFile:
    """``webhook-secrets.json``: read (cached, re-read when its mtime changes) and written."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._secrets: dict[str, TenantSecret] = {}
        self._mtime: float | None = None
        self._checked = float("-inf")

    @classmethod
    def in_data_dir(cls, data_dir: Path, clock: Callable[[], float] = time.time) -> SecretsFile:
        return cls(data_dir / FILE_NAME, clock)

    def get(self, tenant: str) -> TenantSecret | None:
        self._refresh()
        return self._secrets.get(tenant)

    def signing(self, tenant: str) -> list[str]:
        """The secrets that sign ``tenant``'s callbacks now; [] if it has none."""
        secret = self.get(tenant)
        return secret.signing(self._clock()) if secret else []

    def ensure(self, tenants: Iterable[str]) -> list[str]:
        """Make a secret for each of ``tenants`` that has none; the tenants given one."""
        self._refresh(force=True)
        added = [t for t in sorted(set(tenants)) if t not in self._secrets]
        if added:
            self._secrets.update({t: TenantSecret(new_secret()) for t in added})
            self._save()
        return added

    def rotate(self, tenant: str) -> TenantSecret:
        """A new secret for ``tenant`` (made if it had none); the old one signs for the overlap."""
        self._refresh(force=True)
        old = self._secrets.get(tenant)
        now = self._clock()
        secret = old.rotated(now, new_secret()) if old else TenantSecret(new_secret())
        self._secrets[tenant] = secret
        self._save()
        return secret

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < RELOAD_SECONDS:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime_ns / 1e9
        except FileNotFoundError:
            self._secrets, self._mtime = {}, None
            return
        if mtime != self._mtime:
            data = json.loads(self.path.read_text())
            if data.get("version") != _VERSION:
                raise ValueError(f"{self.path}: version {data.get('version')!r}, "
                                 f"this Herald reads {_VERSION}")
            self._secrets = {
                str(tenant): TenantSecret(str(entry["current"]), entry.get("previous"),
                                          float(entry.get("rotated_at", 0.0)))
                for tenant, entry in data["tenants"].items()}
            self._mtime = mtime

    def _save(self) -> None:
        data = {"version": _VERSION, "tenants": {
            tenant: {"current": s.current, "previous": s.previous, "rotated_at": s.rotated_at}
            for tenant, s in sorted(self._secrets.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(self.path.name + ".tmp")
        temp.unlink(missing_ok=True)  # a leftover keeps its mode through O_TRUNC
        # Created 0600 (never readable by others, not even for a moment), then renamed over.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.path)
        self._mtime = None  # read back what was written (and its mtime) on next use
        self._checked = float("-inf")

