"""Receipt reconciliation: a provider's receipt turns ``sent`` into ``delivered`` or ``failed``.

Receipts arrive on their own schedule. One for a notification still ``sending`` (the provider
answered its callback before our channel actor's ack reached the shard) is held until that ack;
one whose provider id does not match the message the record sent is ignored.
"""

from __future__ import annotations

from herald.attempt import Attempt
from herald.outcome import Outcome
from herald.record import Record
from herald.status import Status

_RECEIPT_STATUS = {"delivered": Status.DELIVERED, "failed": Status.FAILED}


def is_receipt(outcome: Outcome) -> bool:
    """Only a provider receipt (no lease) may change a final record."""
    return outcome.lease is None and outcome.kind in _RECEIPT_STATUS


def apply_receipt(record: Record, outcome: Outcome, now: float) -> bool:
    """Move a ``sent`` record to the receipt's state; False when the receipt does not apply."""
    if record.status is not Status.SENT or outcome.kind not in _RECEIPT_STATUS:
        return False
    if outcome.provider_id and record.provider_id and outcome.provider_id != record.provider_id:
        return False  # a receipt for another message than the one this record sent
    record.status = _RECEIPT_STATUS[outcome.kind]
    record.updated_at = now
    record.history.append(Attempt(
        at=now, outcome=outcome.kind, provider=outcome.provider, attempt=record.attempts,
        error=outcome.error, code=outcome.code, receipt=True))
    return True


class EarlyReceipts:
    """Receipts that overtook our own ack, by tag, until that ack arrives."""

    def __init__(self) -> None:
        self._held: dict[str, Outcome] = {}

    def hold(self, outcome: Outcome) -> None:
        self._held[outcome.tag] = outcome

    def take(self, tag: str) -> Outcome | None:
        """The held receipt for ``tag`` (removed), if any."""
        return self._held.pop(tag, None)

    def __len__(self) -> int:
        return len(self._held)
