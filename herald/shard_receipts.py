"""Provider receipts (``delivered``/``failed``) reconciled with a shard's notifications.

A receipt for a ``sent`` notification moves it on; one that overtook our own ``sent`` ack is
held, durably, until that ack; one for a notification waiting to be sent again after an
attempt (``retrying``) is that attempt's final state. A bounce (an RFC 3464 report that the
mail failed for good) turns a ``sent`` email ``bounced``; a complaint (RFC 5965) turns its
category off for email for its user. A part of ``herald.queue.QueueShard``.
"""

from __future__ import annotations

import contextlib

from herald.attempt import Attempt
from herald.bounce_reports import BounceKind, BounceReport
from herald.channels import Channel
from herald.delivery_log import FINAL
from herald.errors import ValidationError
from herald.outcome import Outcome
from herald.reconcile import apply_receipt
from herald.record import Record
from herald.shard_state import ShardState
from herald.status import WAITING, Status
from herald.suppressions import BOUNCED, COMPLAINED, Suppression, contact_key

_RECEIPT_STATUS = {"delivered": Status.DELIVERED, "failed": Status.FAILED}


class ReceiptHandling(ShardState):
    """Receipts of one shard."""

    def _finish(self, record: Record, status: Status, now: float, entry: Attempt | None) -> None:
        raise NotImplementedError  # QueueShard's

    def _queue_callback(self, record: Record, now: float) -> None:
        raise NotImplementedError  # QueueShard's

    def receipt(self, outcome: Outcome, now: float) -> bool:
        """A provider's receipt (``delivered``/``failed``) for a sent notification.

        One for a notification being sent (the provider answered before our channel actor's
        ack arrived) is held, durably, until that ack; True means applied or held. One for a
        notification waiting to be sent *again* (``retrying``, or queued after its lease
        expired: the provider did take an attempt whose answer we never had) is applied at
        once: it is the final state, and the message is not sent again.
        """
        record = self._live.get(outcome.tag)
        if record is None and (stored := self._stored(outcome.tag)) is not None and not stored.final:
            record = stored  # waiting on disk only (herald.memory_window): not sent yet either
        if record is not None and record.status in WAITING and record.attempts > 0 \
                and outcome.kind in ("delivered", "failed"):
            return self._receipt_while_waiting(record, outcome, now)
        if record is not None:
            self._early_receipts[outcome.tag] = outcome
            self._pending.receipts[outcome.tag] = outcome
            return True
        return self._receipt(outcome, now)

    def _receipt_while_waiting(self, record: Record, outcome: Outcome, now: float) -> bool:
        """A receipt for an attempt we counted as failed: the provider had it after all."""
        if outcome.provider_id and record.provider_id and outcome.provider_id != record.provider_id:
            return False  # a receipt for another message than the one this record sent
        if outcome.provider_id:
            record.provider_id = outcome.provider_id
        entry = Attempt(at=now, outcome=outcome.kind, provider=outcome.provider,
                        attempt=record.attempts, error=outcome.error, code=outcome.code,
                        provider_id=outcome.provider_id, receipt=True)
        self._ready.remove(record.tag)
        self._finish(record, _RECEIPT_STATUS[outcome.kind], now, entry)
        return True

    def bounce(self, report: BounceReport, now: float) -> tuple[str, Suppression] | None:
        """A hard bounce or a complaint for one of this shard's emails (by ``report.tag``):
        who must be suppressed — (tenant, the suppression) — or None (not ours, or nothing
        to suppress). Applying one twice changes nothing more (a sender may resend it)."""
        record = self._live.get(report.tag) if report.tag else None
        record = record or (self._stored(report.tag) if report.tag else None)
        if record is None or record.channel is not Channel.EMAIL:
            return None
        contact = report.recipient or record.recipient
        if report.kind is BounceKind.COMPLAINT:
            category = record.type.rsplit("_", 1)[0]
            with contextlib.suppress(ValidationError):  # a category no preference can name
                self.recipients.set_preference(record.tenant, record.uid, category,
                                               Channel.EMAIL.key, False, now)
        elif report.kind is BounceKind.HARD and record.status is Status.SENT:
            record.status = Status.BOUNCED  # final to final: no live count moves
            record.updated_at = now
            record.history.append(Attempt(at=now, outcome="bounced", attempt=record.attempts,
                                          error=report.diagnostic, code=report.status,
                                          receipt=True))
            self._count(Status.BOUNCED.value, record.tenant)
            self._pending.update(record)
            self._log(record, FINAL, Status.BOUNCED.value, record.history[-1], now)
            self._finished.append(record.tag)
            self._queue_callback(record, now)
        elif report.kind is not BounceKind.HARD:
            return None
        reason = COMPLAINED if report.kind is BounceKind.COMPLAINT else BOUNCED
        return None if contact is None else (
            record.tenant, Suppression(contact_key(contact), reason, now))

    def _let_go_receipt(self, tag: str) -> None:
        if self._early_receipts.pop(tag, None) is not None:
            self._pending.receipts[tag] = None

    def _receipt(self, outcome: Outcome, now: float) -> bool:
        record = self._stored(outcome.tag)
        if record is not None and record.status.value == outcome.kind:
            return True  # the provider sent it again: applied already
        if record is None or not apply_receipt(record, outcome, now):
            return False
        self._count(record.status.value, record.tenant)
        self._pending.update(record)
        self._log(record, FINAL, record.status.value, record.history[-1], now)
        self._finished.append(record.tag)
        self._queue_callback(record, now)
        return True
