"""Tenants' webhook signing secrets made by Herald: random ``whsec_`` secrets, kept for the deployment.

A tenant without an explicit ``HERALD_WEBHOOK_SECRETS`` entry gets a Standard Webhooks secret,
``whsec_`` + base64 of 32 random bytes, made once and kept in the deployment's store
(``herald.deployment_store``: ``<data dir>/webhook-secrets.json``, mode 0600, replaced
atomically; or the database, shared by every deployment on it), never derived from the API key.
``rotate`` makes a new one and keeps the old one for ``OVERLAP_SECONDS``: meanwhile callbacks
carry both signatures, so a receiver can switch at its own pace. Readers (intake replicas,
webhook actors) read the secrets again every ``RELOAD_SECONDS``, so a rotation by ``herald
webhook-secret rotate`` reaches them without a restart.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from herald.data_dir import WEBHOOK_SECRETS
from herald.deployment_store import DeploymentStore
from herald.errors import Unavailable

#: Their name in the deployment's store (the file in the data dir); one owner of the name.
FILE_NAME = WEBHOOK_SECRETS
PREFIX = "whsec_"
#: How long a rotated-out secret still signs callbacks (beside the new one).
OVERLAP_SECONDS = 24 * 3600.0
#: How often a reader reads the secrets again, to see a rotation.
RELOAD_SECONDS = 1.0
_VERSION = 1
log = logging.getLogger("herald.webhook_secrets")


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


class WebhookSecrets:
    """The tenants' secrets, kept as one document (``FILE_NAME``) in the deployment's store.

    Readers see a change (a rotation by ``herald webhook-secret rotate``, by another process or
    another deployment on the database) within ``RELOAD_SECONDS``. Writers change the document
    with ``compare_and_set``: one that lost a race reads the winner's and tries again, so two
    Heralds starting together (or a rotation meanwhile) never lose each other's secrets.
    """

    def __init__(self, store: DeploymentStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._secrets: dict[str, TenantSecret] = {}
        self._text: str | None = None  # the document as last read
        self._read_once = False
        self._checked = float("-inf")

    def get(self, tenant: str) -> TenantSecret | None:
        self._refresh()
        return self._secrets.get(tenant)

    def signing(self, tenant: str) -> list[str]:
        """The secrets that sign ``tenant``'s callbacks now; [] if it has none."""
        secret = self.get(tenant)
        return secret.signing(self._clock()) if secret else []

    def ensure(self, tenants: Iterable[str]) -> list[str]:
        """Make a secret for each of ``tenants`` that has none; the tenants given one."""
        wanted = sorted(set(tenants))
        while True:
            kept = self._read()
            added = [t for t in wanted if t not in self._secrets]
            if not added:
                return []
            if self._write(kept, {**self._secrets, **{t: TenantSecret(new_secret()) for t in added}}):
                return added

    def rotate(self, tenant: str) -> TenantSecret:
        """A new secret for ``tenant`` (made if it had none); the old one signs for the overlap."""
        while True:
            kept = self._read()
            old = self._secrets.get(tenant)
            secret = old.rotated(self._clock(), new_secret()) if old else TenantSecret(new_secret())
            if self._write(kept, {**self._secrets, tenant: secret}):
                return secret

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_SECONDS:
            return
        try:
            self._read()
        except Unavailable as exc:
            if not self._read_once:
                raise
            # Sign with what was read last rather than not at all; look again in a while.
            log.warning("webhook secrets not re-read, using the last ones: %s", exc.message)
        self._checked = now

    def _read(self) -> str | None:
        text = self._store.get(FILE_NAME)
        self._use(text)
        return text

    def _write(self, kept: str | None, secrets: dict[str, TenantSecret]) -> bool:
        text = json.dumps({"version": _VERSION, "tenants": {
            tenant: {"current": s.current, "previous": s.previous, "rotated_at": s.rotated_at}
            for tenant, s in sorted(secrets.items())}}, indent=1)
        if not self._store.compare_and_set(FILE_NAME, kept, text):
            return False
        self._use(text)
        return True

    def _use(self, text: str | None) -> None:
        self._read_once = True
        self._checked = time.monotonic()
        if text == self._text:
            return
        if text is None:
            self._secrets, self._text = {}, None
            return
        data = json.loads(text)
        if data.get("version") != _VERSION:
            raise ValueError(f"{FILE_NAME} in {self._store.where}: version "
                             f"{data.get('version')!r}, this Herald reads {_VERSION}")
        self._secrets = {
            str(tenant): TenantSecret(str(entry["current"]), entry.get("previous"),
                                      float(entry.get("rotated_at", 0.0)))
            for tenant, entry in data["tenants"].items()}
        self._text = text
