"""Each tenant's fair share of a shard's queue limit: one tenant cannot crowd out the others.

The queue limit (``HERALD_QUEUE_LIMIT``, and its twin in bytes) is split over the shards; on
each shard it is *soft* for a tenant still within its share and *hard* for one beyond it:

- below the limit, anyone is admitted (one tenant alone may use all of it);
- at or over the limit, a tenant is admitted only while it holds less than its share,
  ``max(limit / active tenants, floor)``, the active tenants being those with live work on
  the shard, the one asking included. A tenant that filled the shard alone is over its share
  as soon as a second one arrives, so it is refused while the other is admitted up to its own;
- never beyond ``OVERSHOOT`` times the limit, whatever the shares (a last bound on disk and
  memory when very many tenants each hold a little).

So a tenant within its share is never refused because of what others hold, short of that bound.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A share is never smaller than this fraction of the limit (many tiny tenants still get some).
MIN_SHARE_FRACTION = 0.01
#: Nothing is admitted beyond this many times the limit, shares or not.
OVERSHOOT = 2


@dataclass(frozen=True, slots=True)
class Holding:
    """What is held on a shard: by everyone, and by the tenant asking (count or bytes)."""

    total: int
    tenant: int
    #: Tenants with live work on the shard, the one asking included.
    active: int


def share(limit: int, active: int) -> int:
    """One tenant's fair share of ``limit`` among ``active`` tenants."""
    return max(limit // max(1, active), int(limit * MIN_SHARE_FRACTION), 1)


def admits(limit: int, holding: Holding, adding: int) -> bool:
    """Whether ``adding`` more of one tenant fit (see the module docstring)."""
    after = holding.total + adding
    if after <= limit:
        return True
    return after <= OVERSHOOT * limit and holding.tenant + adding <= share(limit, holding.active)
