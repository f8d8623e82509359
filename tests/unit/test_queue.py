"""Unit tests for herald.queue.QueueShard: ordering, leases, outcomes, idempotency, recovery.

Each test runs against every storage backend. Like the Ray shell, the helpers flush after every
operation (nothing is answered before it is durable), except where a test says otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from herald.channels import Channel
from herald.delivery_log import LogEvent
from herald.errors import Conflict, NotFound
from herald.inbox_store import InboxStore
from herald.notification import Accepted, Notification
from herald.outcome import Outcome, OutcomeKind
from herald.queue import LeaseRenewal, QueueShard
from herald.record import FINAL, Record
from herald.retry import RetryPolicy
from herald.storage import ReceiptChanges, Storage, WaitingCount
from tests.unit.conftest import T0, TENANT, lane, make_notification, make_shard

LEASE = 30.0


def put(shard: QueueShard, *notifications: Notification, now: float = T0) -> list[Accepted]:
    results = shard.enqueue(list(notifications), now)
    shard.flush()
    return results


def take(
    shard: QueueShard, channel: str = "BROWSER", limit: int = 10, now: float = T0,
    lease_seconds: float = LEASE,
) -> list[str]:
    leased = shard.lease(lane(channel), limit, now, lease_seconds)
    shard.flush()
    return [d.tag for d in leased]


def ack(shard: QueueShard, tag: str, kind: OutcomeKind, now: float, **fields: Any) -> list[str]:
    finished = shard.ack([Outcome(tag, kind, "capture", **fields)], now)
    shard.flush()
    return finished


def status(shard: QueueShard, tag: str) -> str:
    return shard.get(tag, TENANT).status


def stored_status(storage: Storage, tag: str) -> str | None:
    record = storage.get(tag)
    return record.status if record else None


# -- enqueue and positions ------------------------------------------------------------------
def test_enqueue_answers_tag_position_and_not_duplicate(storage: Storage) -> None:
    shard = make_shard(storage)
    first = make_notification()
    assert put(shard, first) == [Accepted(first.tag, 1, duplicate=False)]
    assert put(shard, make_notification())[0].pos == 2
    assert stored_status(storage, first.tag) == "queued"
    assert shard.counters["accepted"] == 2


def test_asap_and_higher_priority_go_ahead_of_queued_normal_ones(storage: Storage) -> None:
    shard = make_shard(storage)
    put(shard, make_notification(), make_notification(), make_notification())
    assert put(shard, make_notification(asap="yes"))[0].pos == 1
    assert put(shard, make_notification(priority=9))[0].pos == 1
    assert put(shard, make_notification(asap="yes"))[0].pos == 3
    assert put(shard, make_notification(priority=0))[0].pos == 7


def test_positions_are_per_channel(storage: Storage) -> None:
    shard = make_shard(storage)
    put(shard, *(make_notification("EMAIL") for _ in range(5)))
    assert put(shard, make_notification("SMS"))[0].pos == 1
    assert put(shard, make_notification("EMAIL"))[0].pos == 6


def test_position_of_a_queued_notification_and_of_a_leased_one(storage: Storage) -> None:
    shard = make_shard(storage)
    tags = [r.tag for r in put(shard, make_notification(), make_notification())]
    assert shard.position(tags[1]) == 2
    take(shard, limit=1)
    assert shard.position(tags[0]) == 0  # out for delivery: no longer waiting in line
    assert shard.position(tags[1]) == 1


# -- lease order ----------------------------------------------------------------------------
def test_lease_hands_out_highest_priority_first_then_fifo(storage: Storage) -> None:
    shard = make_shard(storage)
    low = make_notification(priority=1)
    normal_a, normal_b = make_notification(), make_notification()
    urgent = make_notification(asap="yes")
    top = make_notification(priority=9)
    put(shard, low, normal_a, normal_b, urgent, top)
    assert take(shard, limit=2) == [top.tag, urgent.tag]
    assert take(shard, limit=10) == [normal_a.tag, normal_b.tag, low.tag]
    assert take(shard) == []


def test_fifo_holds_across_many_batches(storage: Storage) -> None:
    shard = make_shard(storage)
    expected = [r.tag for r in put(shard, *(make_notification() for _ in range(20)))]
    got: list[str] = []
    while batch := take(shard, limit=3):
        got += batch
    assert got == expected


def test_channels_are_independent(storage: Storage) -> None:
    shard = make_shard(storage)
    put(shard, *(make_notification("EMAIL", priority=9) for _ in range(50)))
    sms = make_notification("SMS", priority=0)
    put(shard, sms)
    assert take(shard, "SMS", limit=10) == [sms.tag]
    assert len(take(shard, "EMAIL", limit=100)) == 50
    assert take(shard, "FAX") == []


def test_lease_hands_out_what_a_channel_actor_needs(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    put(shard, notification)
    [delivery] = shard.lease(lane("SMS"), 1, T0, LEASE)
    assert delivery.tag == notification.tag
    assert delivery.recipient == "+14155550100"
    assert delivery.attempt == 1
    assert delivery.payload["details"]["content"] == "Hi {user.name.first}"
    record = shard.get(notification.tag, TENANT)
    assert (record.status, record.lease_until) == ("sending", T0 + LEASE)


# -- outcomes -------------------------------------------------------------------------------
def test_ack_sent_is_final_with_history(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification()
    put(shard, notification)
    tag = notification.tag
    take(shard)
    assert ack(shard, tag, "sent", T0 + 2, provider_id="SM123") == [tag]
    record = storage.get(tag)
    assert record is not None
    assert record.status == "sent" and record.final
    assert record.attempts == 1 and record.provider_id == "SM123"
    [entry] = record.history
    assert entry.outcome == "sent" and entry.attempt == 1 and entry.at == T0 + 2
    assert entry.provider_id == "SM123"
    assert shard.depth() == {} and shard.live_count() == 0
    assert shard.counters["sent"] == 1
    assert shard.latency.count == 1 and shard.latency.total == 2.0
    assert take(shard, now=T0 + 100) == []


def test_ack_failed_is_final(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    put(shard, notification)
    take(shard, "SMS")
    tag = notification.tag
    assert ack(shard, tag, "failed", T0 + 1, error="invalid number", code="21211") == [tag]
    assert stored_status(storage, tag) == "failed"
    assert shard.counters["failed"] == 1
    assert shard.get(tag, TENANT).history[-1].code == "21211"
    assert take(shard, "SMS", now=T0 + 100) == []


def test_ack_retry_waits_for_backoff_then_comes_back_as_attempt_two(storage: Storage) -> None:
    policy = RetryPolicy(base_seconds=10.0, cap_seconds=60.0, max_attempts=5)
    shard = make_shard(storage, policies={"BROWSER": policy})
    notification = make_notification()
    put(shard, notification)
    tag = notification.tag
    take(shard)
    assert ack(shard, tag, "retry", T0 + 1, error="timeout") == []
    record = shard.get(tag, TENANT)
    assert record.status == "retrying"
    assert T0 + 1 <= record.not_before <= T0 + 1 + 10.0
    assert stored_status(storage, tag) == "retrying"
    assert shard.next_wakeup() == record.not_before
    assert shard.depth() == {"BROWSER": {"queued": 0, "retrying": 1, "sending": 0}}
    assert shard.counters["retried"] == 1

    assert take(shard, now=record.not_before - 0.001) == []
    [delivery] = shard.lease(lane("BROWSER"), 10, record.not_before, LEASE)
    assert delivery.tag == tag and delivery.attempt == 2


def test_retry_after_from_the_provider_is_respected(storage: Storage) -> None:
    shard = make_shard(storage, policies={"BROWSER": RetryPolicy(base_seconds=1.0)})
    notification = make_notification()
    put(shard, notification)
    take(shard)
    ack(shard, notification.tag, "retry", T0, retry_after=120.0)
    assert shard.get(notification.tag, TENANT).not_before == T0 + 120.0
    assert take(shard, now=T0 + 119) == []
    assert take(shard, now=T0 + 120) == [notification.tag]


def test_retry_is_seeded_and_reproducible(storage: Storage) -> None:
    policy = {"BROWSER": RetryPolicy(base_seconds=10.0)}
    shard = make_shard(storage, policies=policy, seed=0)
    notification = make_notification()
    put(shard, notification)
    take(shard)
    ack(shard, notification.tag, "retry", T0)
    expected = T0 + RetryPolicy(base_seconds=10.0).delay(1, rng=random.Random(0))
    assert shard.get(notification.tag, TENANT).not_before == expected


def test_retry_exhausting_max_attempts_is_dead(storage: Storage) -> None:
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=1.0, max_attempts=3)
    shard = make_shard(storage, policies={"BROWSER": policy})
    notification = make_notification()
    put(shard, notification)
    tag = notification.tag
    now = T0
    for attempt in (1, 2):
        [delivery] = shard.lease(lane("BROWSER"), 1, now, LEASE)
        assert delivery.attempt == attempt
        assert ack(shard, tag, "retry", now) == []
        now += 1.0
    take(shard, now=now)
    assert ack(shard, tag, "retry", now) == [tag]
    record = storage.get(tag)
    assert record is not None and record.status == "dead" and record.attempts == 3
    assert [h.outcome for h in record.history] == ["retry"] * 3
    assert shard.counters["dead"] == 1
    assert take(shard, now=now + 1000) == []


def test_default_policy_applies_to_channels_without_one(storage: Storage) -> None:
    shard = make_shard(storage, policies={"SMS": RetryPolicy(max_attempts=1)})
    sms, browser = make_notification("SMS"), make_notification()
    put(shard, sms, browser)
    take(shard, "SMS")
    take(shard)
    assert ack(shard, sms.tag, "retry", T0) == [sms.tag]
    assert ack(shard, browser.tag, "retry", T0) == []  # RetryPolicy() allows 5
    assert status(shard, browser.tag) == "retrying"


# -- leases ---------------------------------------------------------------------------------
def test_an_expired_lease_counts_as_an_attempt_and_is_retried(storage: Storage) -> None:
    """Its send may have happened (a slow provider): it uses up an attempt, so a message that
    keeps crashing its channel actor ends dead instead of looping until its TTL."""
    shard = make_shard(storage, policies={"BROWSER": RetryPolicy(base_seconds=0.0, max_attempts=2)})
    first, second = make_notification(), make_notification()
    put(shard, first, second)
    assert take(shard, limit=1) == [first.tag]
    assert take(shard, limit=1, now=T0 + LEASE - 0.001) == [second.tag]
    assert shard.next_wakeup() == T0 + LEASE
    [delivery] = shard.lease(lane("BROWSER"), 10, T0 + LEASE, LEASE)
    assert delivery.tag == first.tag
    assert delivery.attempt == 2
    shard.flush()
    record = storage.get(first.tag)
    assert record is not None and record.lease_until == T0 + 2 * LEASE
    assert [(h.outcome, h.code) for h in record.history] == [("retry", "lease_expired")]
    assert shard.counters["lease_expired"] == 1
    take(shard, limit=0, now=T0 + 3 * LEASE)  # the second lease expires too: budget used up
    assert stored_status(storage, first.tag) == "dead"


def test_a_renewed_lease_does_not_expire(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification()
    put(shard, notification)
    [delivery] = shard.lease(lane("BROWSER"), 1, T0, LEASE)
    assert shard.renew([LeaseRenewal(delivery.tag, delivery.lease)], T0 + LEASE - 1, LEASE) == 1
    assert shard.renew([LeaseRenewal(delivery.tag, delivery.lease + 1)], T0 + 1, LEASE) == 0
    take(shard, now=T0 + LEASE + 1)
    assert status(shard, notification.tag) == "sending"
    assert ack(shard, notification.tag, "sent", T0 + LEASE + 2, lease=delivery.lease) == [
        notification.tag]
    assert shard.counters["lease_expired"] == 0


def test_stale_ack_after_requeue_marks_sent_and_is_not_leased_again(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification()
    put(shard, notification)
    tag = notification.tag
    take(shard)
    take(shard, "SMS", now=T0 + LEASE + 1)  # any lease call promotes expired leases
    assert status(shard, tag) == "retrying"
    assert ack(shard, tag, "sent", T0 + LEASE + 2) == [tag]
    assert stored_status(storage, tag) == "sent"
    assert take(shard, now=T0 + LEASE + 3) == []
    assert shard.depth() == {}


def test_ack_from_an_old_lease_after_a_new_one_finishes_it_once(storage: Storage) -> None:
    shard = make_shard(storage, policies={"BROWSER": RetryPolicy(base_seconds=0.0)})
    notification = make_notification()
    put(shard, notification)
    tag = notification.tag
    take(shard)
    assert take(shard, now=T0 + LEASE) == [tag]  # second worker
    assert ack(shard, tag, "sent", T0 + LEASE + 1, lease=T0) == [tag]  # first worker, late
    assert ack(shard, tag, "sent", T0 + LEASE + 2, lease=T0 + LEASE) == []  # second worker
    assert shard.counters["stale_acks"] == 1
    assert shard.counters["sent"] == 1
    assert shard.counters["duplicate_sends"] == 1  # both sent it: counted, not hidden
    record = storage.get(tag)
    assert record is not None
    assert [h.outcome for h in record.history] == ["retry", "sent"]  # the expiry, then the send


def test_stale_retry_from_an_expired_lease_does_not_release_a_newer_lease(
    storage: Storage,
) -> None:
    shard = make_shard(storage, policies={"BROWSER": RetryPolicy(base_seconds=0.0)})
    notification = make_notification()
    put(shard, notification)
    tag = notification.tag
    take(shard, lease_seconds=10.0)  # worker 1, slow
    assert take(shard, now=T0 + 10, lease_seconds=30.0) == [tag]  # worker 2, valid to T0+40
    ack(shard, tag, "retry", T0 + 11, retry_after=0.0, lease=T0)  # worker 1, late
    assert take(shard, now=T0 + 13) == []  # worker 2 still holds it


def test_expired_ttl_fails_at_lease_time(storage: Storage) -> None:
    shard = make_shard(storage)
    short, fresh = make_notification(ttl=60), make_notification()
    put(shard, short, fresh)
    assert take(shard, now=T0 + 60) == [fresh.tag]
    record = storage.get(short.tag)
    assert record is not None and record.status == "failed"
    assert record.history[-1].error == "expired"
    assert shard.counters["expired"] == 1 and shard.counters["failed"] == 1


# -- waiting without an attempt: defer (rate limit) and park (recipient away) --------------
def test_defer_waits_without_using_an_attempt(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    put(shard, notification)
    tag = notification.tag
    take(shard, "SMS")
    assert ack(shard, tag, "defer", T0 + 1, retry_after=5.0) == []
    record = storage.get(tag)
    assert record is not None
    assert (record.status, record.attempts, record.history) == ("queued", 0, [])
    assert take(shard, "SMS", now=T0 + 5.9) == []
    [delivery] = shard.lease(lane("SMS"), 1, T0 + 6, LEASE)
    assert (delivery.tag, delivery.attempt) == (tag, 1)


def test_parked_notifications_wait_for_their_recipient_then_leave_in_order(
    storage: Storage,
) -> None:
    shard = make_shard(storage)
    first, second = make_notification(uid=7), make_notification(uid=7)
    other = make_notification(uid=8)
    put(shard, first, second, other)
    take(shard, limit=2)
    ack(shard, second.tag, "park", T0)
    ack(shard, first.tag, "park", T0)
    assert stored_status(storage, first.tag) == "queued"
    assert take(shard, now=T0 + 100) == [other.tag]
    assert shard.unpark(TENANT, "8", T0 + 100) == []
    assert shard.unpark("someone-else", "7", T0 + 100) == []
    assert len(shard.unpark(TENANT, "7", T0 + 101)) == 2
    assert take(shard, now=T0 + 101) == [first.tag, second.tag]


def test_a_parked_notification_expires(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification(ttl=60)
    put(shard, notification)
    take(shard)
    ack(shard, notification.tag, "park", T0 + 1)
    wakeup = shard.next_wakeup()
    assert wakeup is not None and wakeup <= T0 + 60
    take(shard, "SMS", now=T0 + 60)  # any lease call runs the clock
    record = storage.get(notification.tag)
    assert record is not None and record.status == "failed"
    assert record.history[-1].error == "expired"
    assert shard.unpark(TENANT, notification.uid, T0 + 61) == []


def test_parking_is_not_durable_so_a_restart_retries_parked_ones(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification()
    put(shard, notification)
    take(shard)
    ack(shard, notification.tag, "park", T0)
    assert take(make_shard(storage), now=T0 + 1) == [notification.tag]


# -- requester callbacks --------------------------------------------------------------------
def test_a_final_state_queues_a_durable_callback(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification(callback_url="https://example.com/hook")
    put(shard, notification)
    take(shard)
    ack(shard, notification.tag, "sent", T0 + 1)
    hook_tag = f"{notification.tag}.sent"
    hook = storage.get(hook_tag)
    assert hook is not None and hook.channel == "WEBHOOK" and hook.status == "queued"
    assert hook.payload["body"]["status"] == "sent"
    [delivery] = make_shard(storage).lease(lane("WEBHOOK"), 10, T0 + 2, LEASE)
    assert delivery.recipient == "https://example.com/hook"


# -- cancel and reads -----------------------------------------------------------------------
def test_cancel_queued_and_retrying(storage: Storage) -> None:
    shard = make_shard(storage)
    queued, retried = make_notification(), make_notification()
    put(shard, queued, retried)
    take(shard, limit=1)
    take(shard, limit=1)
    ack(shard, retried.tag, "retry", T0, retry_after=5.0)
    ack(shard, queued.tag, "retry", T0, retry_after=0.0)
    take(shard, "SMS", now=T0 + 1)  # promotes the due retry to ready
    for tag in (queued.tag, retried.tag):
        assert shard.cancel(tag, TENANT, T0 + 1).status == "cancelled"
        shard.flush()
        assert stored_status(storage, tag) == "cancelled"
    assert shard.counters["cancelled"] == 2
    assert shard.depth() == {}
    assert take(shard, now=T0 + 100) == []


def test_cancel_sending_or_final_conflicts(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification()
    put(shard, notification)
    tag = notification.tag
    take(shard)
    with pytest.raises(Conflict):
        shard.cancel(tag, TENANT, T0)
    ack(shard, tag, "sent", T0)
    with pytest.raises(Conflict):
        shard.cancel(tag, TENANT, T0)


def test_cancel_or_get_unknown_or_other_tenant_is_not_found(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification()
    put(shard, notification)
    with pytest.raises(NotFound):
        shard.cancel("no-such-tag", TENANT, T0)
    with pytest.raises(NotFound):
        shard.cancel(notification.tag, "someone-else", T0)
    with pytest.raises(NotFound):
        shard.get(notification.tag, "someone-else")
    assert status(shard, notification.tag) == "queued"


def test_get_reads_final_records_from_storage(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification()
    put(shard, notification)
    take(shard)
    ack(shard, notification.tag, "sent", T0)
    again = make_shard(storage)
    assert again.get(notification.tag, TENANT).status == "sent"


def test_depth_counts_per_channel_and_status(storage: Storage) -> None:
    shard = make_shard(storage)
    put(shard, *(make_notification() for _ in range(4)), make_notification("SMS"))
    sending = take(shard, limit=2)
    ack(shard, sending[0], "retry", T0, retry_after=10.0)
    assert shard.depth() == {
        "BROWSER": {"queued": 2, "retrying": 1, "sending": 1},
        "SMS": {"queued": 1, "retrying": 0, "sending": 0},
    }
    assert shard.live_count() == 5


def test_counters(storage: Storage) -> None:
    shard = make_shard(storage, policies={"BROWSER": RetryPolicy(max_attempts=1)})
    a, b, c, d = (make_notification(btag=f"k{i}") for i in range(4))
    put(shard, a, b, c, d)
    put(shard, make_notification(btag="k0"))
    take(shard)
    ack(shard, a.tag, "sent", T0)
    ack(shard, b.tag, "failed", T0)
    ack(shard, c.tag, "retry", T0)
    ack(shard, c.tag, "sent", T0)  # too late: c is dead
    shard.receipt(Outcome(a.tag, "delivered", "capture"), T0 + 1)
    shard.flush()
    assert shard.counters == {
        "accepted": 4, "sent": 1, "delivered": 1, "failed": 1, "dead": 1, "retried": 0,
        "cancelled": 0, "expired": 0, "suppressed": 0, "bounced": 0, "stale_acks": 1,
        "duplicates_refused": 1,
        "lease_expired": 0, "duplicate_sends": 0, "write_failures": 0,
    }
    assert stored_status(storage, d.tag) == "sending"


# -- idempotency ----------------------------------------------------------------------------
def test_same_tenant_and_btag_is_a_duplicate_of_the_first(storage: Storage) -> None:
    shard = make_shard(storage)
    first = make_notification(btag="A36701-BCDEF")
    put(shard, first)
    again = put(shard, make_notification(btag="A36701-BCDEF"))
    assert again == [Accepted(first.tag, 1, duplicate=True)]
    other_tenant = make_notification(btag="A36701-BCDEF", tenant="globex")
    assert put(shard, other_tenant)[0] == Accepted(other_tenant.tag, 2, duplicate=False)
    assert shard.counters["duplicates_refused"] == 1
    assert len(take(shard)) == 2


def test_duplicates_within_one_batch(storage: Storage) -> None:
    shard = make_shard(storage)
    first = make_notification(btag="k")
    results = put(shard, first, make_notification(btag="k"), first)
    assert [(r.tag, r.duplicate) for r in results] == [
        (first.tag, False), (first.tag, True), (first.tag, True)
    ]
    assert shard.live_count() == 1


def test_btag_stays_taken_after_the_first_is_final(storage: Storage) -> None:
    shard = make_shard(storage)
    first = make_notification(btag="k")
    put(shard, first)
    take(shard)
    ack(shard, first.tag, "sent", T0)
    assert put(shard, make_notification(btag="k"), now=T0 + 5) == [
        Accepted(first.tag, 0, duplicate=True)
    ]
    restarted = make_shard(storage, now=T0 + 10)
    assert restarted.enqueue([make_notification(btag="k")], T0 + 10)[0].tag == first.tag


def test_same_tag_twice_is_a_duplicate(storage: Storage) -> None:
    """An actor call retried by Ray carries the same tags again."""
    shard = make_shard(storage)
    notification = make_notification()
    put(shard, notification)
    assert put(shard, notification)[0] == Accepted(notification.tag, 1, duplicate=True)
    take(shard)
    ack(shard, notification.tag, "sent", T0)
    assert put(shard, notification)[0].duplicate is True
    restarted = make_shard(storage)
    assert restarted.enqueue([notification], T0)[0].duplicate is True
    assert restarted.live_count() == 0


# -- receipts -------------------------------------------------------------------------------
def test_receipt_moves_sent_to_delivered(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    put(shard, notification)
    tag = notification.tag
    take(shard, "SMS")
    ack(shard, tag, "sent", T0 + 1, provider_id="SM1")
    assert shard.receipt(Outcome(tag, "delivered", "twilio"), T0 + 5) is True
    shard.flush()
    record = storage.get(tag)
    assert record is not None and record.status == "delivered"
    assert record.history[-1].receipt is True
    assert [h.outcome for h in record.history] == ["sent", "delivered"]
    assert shard.counters["delivered"] == 1
    # A second receipt for a record no longer ``sent`` changes nothing.
    assert shard.receipt(Outcome(tag, "failed", "twilio"), T0 + 6) is False


def test_failed_receipt_after_sent(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    put(shard, notification)
    take(shard, "SMS")
    ack(shard, notification.tag, "sent", T0)
    assert shard.receipt(Outcome(notification.tag, "failed", "twilio", code="30003"), T0)
    shard.flush()
    assert stored_status(storage, notification.tag) == "failed"


def test_receipt_for_an_unknown_notification_is_ignored_and_one_not_yet_sent_is_held(
    storage: Storage,
) -> None:
    shard = make_shard(storage)
    notification = make_notification()
    put(shard, notification)
    assert shard.receipt(Outcome("nope", "delivered", "p"), T0) is False
    assert shard.receipt(Outcome(notification.tag, "delivered", "p"), T0) is True  # held
    assert status(shard, notification.tag) == "queued"


def test_a_held_receipt_survives_a_shard_restart(storage: Storage) -> None:
    """Provider receipts are not lost: one that overtook our ack is stored, not kept in memory."""
    shard = make_shard(storage)
    notification = make_notification("SMS")
    put(shard, notification)
    [delivery] = shard.lease(lane("SMS"), 1, T0, LEASE)
    assert shard.receipt(Outcome(notification.tag, "delivered", "twilio"), T0 + 1) is True
    shard.flush()
    restarted = make_shard(storage, now=T0 + 2)  # the shard crashed and came back
    restarted.ack([Outcome(notification.tag, "sent", "twilio", lease=delivery.lease)], T0 + 3)
    restarted.flush()
    assert stored_status(storage, notification.tag) == "delivered"
    assert storage.load_receipts() == []  # let go once applied


def test_receipt_overtaking_the_sent_ack_is_applied_when_the_ack_arrives(
    storage: Storage,
) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    put(shard, notification)
    tag = notification.tag
    take(shard, "SMS")
    assert shard.receipt(Outcome(tag, "delivered", "twilio"), T0 + 1) is True  # held
    shard.flush()
    assert status(shard, tag) == "sending"
    ack(shard, tag, "sent", T0 + 2, provider_id="SM1")
    record = storage.get(tag)
    assert record is not None and record.status == "delivered"
    assert [h.outcome for h in record.history] == ["sent", "delivered"]
    assert record.provider_id == "SM1"
    assert shard.counters["sent"] == 1 and shard.counters["delivered"] == 1


# -- recovery -------------------------------------------------------------------------------
def test_recovery_rebuilds_ready_leased_and_retrying(storage: Storage) -> None:
    shard = make_shard(storage, policies={"BROWSER": RetryPolicy(base_seconds=0.0)})
    leased, retried, waiting_a, waiting_b = (make_notification() for _ in range(4))
    put(shard, leased, retried, waiting_a, waiting_b)
    take(shard, limit=2)
    ack(shard, retried.tag, "retry", T0 + 1, retry_after=100.0)
    shard.flush()
    del shard  # crash: everything flushed survives, memory does not

    shard = make_shard(storage, now=T0 + 2, policies={"BROWSER": RetryPolicy(base_seconds=0.0)})
    assert shard.depth() == {"BROWSER": {"queued": 2, "retrying": 1, "sending": 1}}
    long_lease = 1000.0
    assert take(shard, now=T0 + 2, lease_seconds=long_lease) == [waiting_a.tag, waiting_b.tag]
    assert take(shard, now=T0 + LEASE - 1) == []
    assert take(shard, now=T0 + LEASE, lease_seconds=long_lease) == [leased.tag]
    assert take(shard, now=T0 + 100) == []
    [delivery] = shard.lease(lane("BROWSER"), 10, T0 + 101, LEASE)
    assert (delivery.tag, delivery.attempt) == (retried.tag, 2)


def test_recovery_of_a_due_retry_and_an_expired_lease(storage: Storage) -> None:
    shard = make_shard(storage)
    leased, retried = make_notification(), make_notification()
    put(shard, leased, retried)
    take(shard)
    ack(shard, retried.tag, "retry", T0, retry_after=10.0)
    shard = make_shard(storage, now=T0 + 500, policies={"BROWSER": RetryPolicy(base_seconds=0.0)})
    assert take(shard, now=T0 + 500) == [leased.tag, retried.tag]


def test_unflushed_work_is_lost_in_a_crash(storage: Storage) -> None:
    shard = make_shard(storage)
    kept, lost = make_notification(), make_notification()
    put(shard, kept)
    shard.enqueue([lost], T0)
    shard.lease(lane("BROWSER"), 10, T0, LEASE)
    shard = make_shard(storage)  # crash before flush: neither call was answered
    assert shard.live_count() == 1
    assert stored_status(storage, lost.tag) is None
    assert take(shard) == [kept.tag]


def test_sequence_continues_after_recovery(storage: Storage) -> None:
    shard = make_shard(storage)
    old = make_notification()
    put(shard, old)
    shard = make_shard(storage)
    new = make_notification()
    assert put(shard, new)[0].pos == 2
    assert take(shard) == [old.tag, new.tag]


# -- batched flushes ------------------------------------------------------------------------
# A shell may apply several calls before one flush (one commit per batch). The queue's
# answers must not depend on how often it is flushed.
def test_reads_see_unflushed_finals(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification(btag="k")
    shard.enqueue([notification], T0)
    shard.lease(lane("BROWSER"), 1, T0, LEASE)
    shard.ack([Outcome(notification.tag, "sent", "p")], T0)
    assert shard.get(notification.tag, TENANT).status == "sent"
    with pytest.raises(Conflict):
        shard.cancel(notification.tag, TENANT, T0)
    again = shard.enqueue([notification, make_notification(btag="k")], T0)
    assert [(r.tag, r.duplicate) for r in again] == [(notification.tag, True)] * 2
    assert shard.receipt(Outcome(notification.tag, "delivered", "p"), T0 + 1) is True
    shard.flush()
    assert stored_status(storage, notification.tag) == "delivered"
    assert make_shard(storage).live_count() == 0


class _FlakyStorage(Storage):
    """Wraps a backend; its next ``write`` fails like a full disk would."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.fail_next = False

    def load_live(self) -> list[Record]:
        return self.inner.load_live()

    def get(self, tag: str) -> Record | None:
        return self.inner.get(tag)

    def load_in_memory(self, windowed: Sequence[Channel]) -> list[Record]:
        return self.inner.load_in_memory(windowed)

    def waiting_counts(self, windowed: Sequence[Channel]) -> list[WaitingCount]:
        return self.inner.waiting_counts(windowed)

    def load_waiting(self, channel: Channel, priority: int, after_seq: int,
                     limit: int) -> list[Record]:
        return self.inner.load_waiting(channel, priority, after_seq, limit)

    def find_idempotent(self, tenant: str, key: str) -> str | None:
        return self.inner.find_idempotent(tenant, key)

    def max_seq(self) -> int:
        return self.inner.max_seq()

    def write(self, inserts: Sequence[Record], updates: Sequence[Record],
              events: Sequence[LogEvent] = (), receipts: ReceiptChanges | None = None) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        self.inner.write(inserts, updates, events, receipts)

    def load_receipts(self) -> list[tuple[str, Outcome]]:
        return self.inner.load_receipts()

    def inbox(self) -> InboxStore:
        return self.inner.inbox()

    def claim(self, entries: Sequence[tuple[str, str, str]], now: float) -> list[str]:
        return self.inner.claim(entries, now)

    def claimed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self.inner.claimed(keys)

    def held_counts(self) -> list[WaitingCount]:
        return self.inner.held_counts()

    def load_held_due(self, now: float, limit: int) -> list[Record]:
        return self.inner.load_held_due(now, limit)

    def load_parked(self, tenant: str, uid: str) -> list[Record]:
        return self.inner.load_parked(tenant, uid)

    def load_expired(self, now: float, limit: int) -> list[Record]:
        return self.inner.load_expired(now, limit)

    def delete_final(self, updated_before: float, limit: int, claims_before: float) -> int:
        return self.inner.delete_final(updated_before, limit, claims_before)

    def read_events(self, after: int, limit: int) -> list[tuple[int, LogEvent]]:
        return self.inner.read_events(after, limit)

    def delete_events(self, through: int) -> None:
        self.inner.delete_events(through)


def test_a_failed_flush_is_written_by_the_next_one(storage: Storage) -> None:
    """The caller of a failed flush retries; the retry must not be answered before it is durable."""
    flaky = _FlakyStorage(storage)
    shard = make_shard(flaky)
    notification = make_notification()
    shard.enqueue([notification], T0)
    flaky.fail_next = True
    with pytest.raises(OSError):
        shard.flush()
    assert shard.live_count() == 0  # memory went back to what the disk has
    assert take(shard) == []  # so what the caller was told failed is never delivered anyway
    assert put(shard, notification)[0].duplicate is False  # the client's retry is new to it
    assert stored_status(storage, notification.tag) == "queued"
    assert make_shard(storage).live_count() == 1
    assert shard.counters["write_failures"] == 1


def test_final_states_are_in_final() -> None:
    assert {"sent", "delivered", "failed", "dead", "cancelled", "suppressed", "bounced"} == FINAL


# -- dead letters ---------------------------------------------------------------------------
def test_dead_notification_can_be_revived_with_a_fresh_budget(storage: Storage) -> None:
    shard = make_shard(storage, policies={"BROWSER": RetryPolicy(max_attempts=1)})
    notification = make_notification()
    put(shard, notification)
    tag = notification.tag
    take(shard)
    ack(shard, tag, "retry", T0)
    assert status(shard, tag) == "dead"
    put(shard, other := make_notification())
    with pytest.raises(Conflict):
        shard.revive(other.tag, TENANT, T0)  # queued, not dead
    shard.revive(tag, TENANT, T0 + 1)
    shard.flush()
    assert status(shard, tag) == "queued"
    assert tag in take(shard, now=T0 + 2)
    ack(shard, tag, "sent", T0 + 2)
    record = storage.get(tag)
    assert record is not None and record.status == "sent" and record.attempts == 1
    assert [h.outcome for h in record.history] == ["retry", "revived", "sent"]


# -- odd provider replies never wedge a shard (issue: one surrogate failed every write) -----------
def test_a_reply_in_an_odd_encoding_is_stored(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    put(shard, notification)
    [delivery] = shard.lease(lane("SMS"), 1, T0, LEASE)
    reply = b"550 r\xe9fus\xff".decode("utf-8", "surrogateescape")  # what aiosmtplib hands over
    outcome = Outcome(delivery.tag, "failed", "smtp", error=reply, code=reply,
                      info={"reply": reply, reply: 1}, lease=delivery.lease)
    shard.ack([outcome], T0 + 1)
    shard.flush()  # used to raise in orjson.dumps and keep failing every later write
    record = storage.get(notification.tag)
    assert record is not None and record.status == "failed"
    assert record.history[-1].error == "550 r?fus?"
    put(shard, make_notification("SMS"))  # the shard goes on


def test_a_revived_dead_letter_gets_a_stored_callback_for_its_second_final_state(
    storage: Storage,
) -> None:
    shard = make_shard(storage, policies={"BROWSER": RetryPolicy(max_attempts=1)})
    notification = make_notification(callback_url="https://example.com/hook")
    put(shard, notification)
    take(shard)
    ack(shard, notification.tag, "retry", T0)  # dead: a callback
    shard.revive(notification.tag, TENANT, T0 + 1)
    shard.flush()
    take(shard, now=T0 + 2)
    ack(shard, notification.tag, "retry", T0 + 3)  # dead again: a second callback, stored too
    assert storage.get(f"{notification.tag}.dead") is not None
    second = storage.get(f"{notification.tag}.dead.1")
    assert second is not None and second.payload["body"]["attempts"] == 1


def test_a_receipt_sent_again_is_answered_as_applied_once(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    put(shard, notification)
    take(shard, "SMS")
    ack(shard, notification.tag, "sent", T0 + 1)
    receipt = Outcome(notification.tag, "delivered", "twilio")
    assert shard.receipt(receipt, T0 + 2) is True
    assert shard.receipt(receipt, T0 + 3) is True  # the provider retried: not a 404
    shard.flush()
    record = storage.get(notification.tag)
    assert record is not None and [h.outcome for h in record.history] == ["sent", "delivered"]
