"""Priority of a notification: 0 (lowest) to 9 (highest); ``asap`` raises it."""

from __future__ import annotations

DEFAULT_PRIORITY = 4
ASAP_PRIORITY = 8
MIN_PRIORITY, MAX_PRIORITY = 0, 9


def compute_priority(asap: bool, explicit: int | None = None) -> int:
    """An explicit ``requester.priority`` wins; otherwise asap → 8, normal → 4.

    Higher leaves first. The gap leaves room for callers to rank their own traffic on either side.
    """
    if explicit is not None:
        return explicit
    return ASAP_PRIORITY if asap else DEFAULT_PRIORITY
