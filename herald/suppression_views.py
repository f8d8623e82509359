"""The admin console's view of a tenant's suppression list: masked rows, and ids to lift one by.

A shard lists a tenant's suppressions together with the SMS STOPs that hold for every tenant
(``herald.suppressions.EVERY_TENANT``), unmarked; ``TenantList`` tells the two apart by taking
out what the every-tenant list holds (one copy each: a tenant may hold an equal entry of its own).

Operators see contacts masked (``herald.masking``), so a row cannot be addressed by what the page
shows: two addresses may mask alike. Each row carries an ``id``, an HMAC of its scope and key
under a key derived from the admin key: stable across replicas and restarts, meaningless
without the admin key, and never the contact itself. Pure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from herald.errors import ValidationError
from herald.masking import mask_contact
from herald.suppressions import EVERY_TENANT, Suppression, contact_key

__all__ = ["MAX_TENANT_LENGTH", "Listed", "TenantList", "entry_id", "tenant_name"]

MAX_TENANT_LENGTH = 200


def tenant_name(raw: Any) -> str:
    """The tenant a request names; the every-tenant scope is not one (its STOPs are listed
    with each tenant's entries)."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not text or len(text) > MAX_TENANT_LENGTH or text == EVERY_TENANT:
        raise ValidationError("tenant: the name of a tenant is required", "tenant")
    return text


def entry_id(admin_key: str, scope: str, entry: Suppression) -> str:
    """The id an operator lifts ``entry`` of ``scope`` (a tenant, or every tenant) by."""
    if not admin_key:
        raise ValueError("the admin key must not be empty")
    key = hmac.new(admin_key.encode(), b"herald-admin.suppression-id", hashlib.sha256).digest()
    digest = hmac.new(key, f"{scope}\n{entry.key}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Listed:
    """One entry as the console lists it: where it holds (``scope``) and its id."""

    scope: str
    entry: Suppression
    id: str

    @property
    def every_tenant(self) -> bool:
        return self.scope == EVERY_TENANT

    def row(self) -> dict[str, Any]:
        entry = self.entry
        return {"id": self.id, "contact": mask_contact(entry.contact), "reason": entry.reason,
                "at": entry.at, "sender": entry.sender or None, "every_tenant": self.every_tenant}


class TenantList:
    """A tenant's suppressions and every tenant's STOPs, newest first, each with its scope."""

    def __init__(self, admin_key: str, tenant: str, listed: Iterable[Suppression],
                 every: Iterable[Suppression]) -> None:
        """``listed``: what a shard lists for ``tenant`` (its own and every tenant's);
        ``every``: what it lists for every tenant (each entry once or more)."""
        shared = set(every)
        left = Counter(shared)
        items = []
        for entry in listed:
            scope = tenant
            if left[entry]:
                left[entry] -= 1
                scope = EVERY_TENANT
            items.append(Listed(scope, entry, entry_id(admin_key, scope, entry)))
        self.tenant = tenant
        self.items = sorted(items, key=lambda item: -item.entry.at)

    def find(self, wanted: str) -> Listed | None:
        if not wanted.isascii():  # no id is anything else (and compare_digest takes ASCII only)
            return None
        return next((item for item in self.items if hmac.compare_digest(item.id, wanted)), None)

    def own(self, contact: str) -> Listed | None:
        """The tenant's own entry of ``contact`` that holds for every sender, if there is one."""
        key = contact_key(contact)
        return next((item for item in self.items if item.scope == self.tenant
                     and item.entry.contact == key and not item.entry.sender), None)

    def page(self, contact: str | None = None, limit: int | None = None) -> dict[str, Any]:
        """The answer of ``GET /v1/admin/suppressions``: rows (of ``contact`` only, if given)
        and how many there are in all."""
        items = self.items
        if contact:
            key = contact_key(contact)
            items = [item for item in items if item.entry.contact == key]
        return {"tenant": self.tenant, "total": len(items),
                "items": [item.row() for item in items[:limit]]}
