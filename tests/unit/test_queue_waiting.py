"""Waiting work that must not crowd out others: fair shares of the queue limit, a deferral budget
for callbacks, deferred and parked work held on disk, expiry over every lane (issue 17, 3 & 9)."""

from __future__ import annotations

import pytest

from herald.channels import Channel
from herald.errors import QueueFull
from herald.fair_share import Holding, admits, share
from herald.notification import Notification
from herald.outcome import Outcome
from herald.queue import QueueShard
from herald.requester_callbacks import CALLBACK_MAX_DEFER_SECONDS, CALLBACK_MAX_DEFERRALS
from herald.status import Status
from herald.storage import Storage
from tests.unit.conftest import T0, lane, make_notification, make_shard

HOOK = "http://127.0.0.1:9/hook"  # a closed port: the requester's endpoint is down


def admit(shard: QueueShard, notifications: list[Notification], limit: int,
          bytes_limit: int = 10**12, now: float = T0) -> list[bool]:
    """Enqueue what fits; which did (as the shell does: ``actors.queue.QueueActor.enqueue``)."""
    refused = shard.refusals(notifications, limit, bytes_limit)
    shard.enqueue([n for n, why in zip(notifications, refused, strict=True) if why is None], now)
    shard.flush()
    assert all(why is None or isinstance(why, QueueFull) for why in refused)
    return [why is None for why in refused]


# -- (a) fair shares -------------------------------------------------------------------------
def test_a_tenant_that_filled_the_shard_cannot_push_another_below_its_share(
        storage: Storage) -> None:
    shard = make_shard(storage)
    flood = [make_notification("EMAIL", tenant="a", callback_url=HOOK) for _ in range(100)]
    assert all(admit(shard, flood, limit=100))  # alone, a tenant may use the whole limit
    assert admit(shard, [make_notification("EMAIL", tenant="a")], limit=100) == [False]
    # A second tenant gets its share (half) although the shard is full, and no more.
    mixed = [make_notification("SMS", tenant="b") for _ in range(51)]
    assert admit(shard, mixed, limit=100) == [True] * 50 + [False]
    assert admit(shard, [make_notification("EMAIL", tenant="a")], limit=100) == [False]


def test_one_call_carrying_two_tenants_refuses_only_the_one_over_its_share(
        storage: Storage) -> None:
    shard = make_shard(storage)
    admit(shard, [make_notification("EMAIL", tenant="a") for _ in range(10)], limit=10)
    batch = [make_notification("EMAIL", tenant="a"), make_notification("EMAIL", tenant="b")]
    assert admit(shard, batch, limit=10) == [False, True]


def test_the_limit_by_bytes_is_shared_the_same_way(storage: Storage) -> None:
    shard = make_shard(storage)
    big = [make_notification("EMAIL", tenant="a") for _ in range(4)]
    limit = sum(n.size for n in big)
    assert all(admit(shard, big, limit=10**6, bytes_limit=limit))
    assert admit(shard, [make_notification("EMAIL", tenant="b")], 10**6, limit) == [True]
    assert admit(shard, [make_notification("EMAIL", tenant="a")], 10**6, limit) == [False]


def test_shares_never_let_a_shard_grow_past_twice_its_limit() -> None:
    assert share(1000, 3) == 333 and share(1000, 10_000) == 10  # a floor for many tenants
    assert admits(100, Holding(total=99, tenant=99, active=1), 1)
    assert not admits(100, Holding(total=100, tenant=100, active=2), 1)
    assert admits(100, Holding(total=150, tenant=0, active=2), 1)
    assert not admits(100, Holding(total=200, tenant=0, active=2), 1)


# -- (b) a callback's deferrals are counted and bounded ------------------------------------
def _failing_callback(shard: QueueShard) -> str:
    notification = make_notification("EMAIL", callback_url=HOOK)
    shard.enqueue([notification], T0)
    [delivery] = shard.lease(lane("EMAIL"), 1, T0, 30.0)
    shard.ack([Outcome(delivery.tag, "sent", "smtp", lease=delivery.lease)], T0)
    shard.flush()
    return f"{notification.tag}.sent"


def test_a_callback_whose_endpoint_stays_down_ends_dead_after_its_deferral_budget(
        storage: Storage) -> None:
    shard = make_shard(storage)
    hook = _failing_callback(shard)
    now = T0
    for deferral in range(1, CALLBACK_MAX_DEFERRALS + 1):
        [delivery] = shard.lease(lane("WEBHOOK"), 1, now, 30.0)
        assert delivery.tag == hook
        shard.ack([Outcome(hook, "defer", "none", lease=delivery.lease, retry_after=86_400,
                           error="every provider's circuit is open")], now)
        shard.flush()
        record = storage.get(hook)
        assert record is not None and record.deferrals == deferral
        if deferral < CALLBACK_MAX_DEFERRALS:  # one wait is capped: no day-long deferrals
            assert record.status is Status.QUEUED
            assert record.not_before == now + CALLBACK_MAX_DEFER_SECONDS
        now += CALLBACK_MAX_DEFER_SECONDS
    assert record.status is Status.DEAD and record.attempts == 0
    assert record.history[-1].code == "deferrals_exhausted"
    assert shard.live_count() == 0


def test_rate_limited_notifications_are_deferred_without_a_budget(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    shard.enqueue([notification], T0)
    now = T0
    for _ in range(CALLBACK_MAX_DEFERRALS + 5):
        [delivery] = shard.lease(lane("SMS"), 1, now, 30.0)
        shard.ack([Outcome(delivery.tag, "defer", "twilio", lease=delivery.lease,
                           retry_after=1.0)], now)
        now += 1.0
    assert shard.get(notification.tag, notification.tenant).status is Status.QUEUED


# -- (c) deferred callbacks and parked messages stay out of memory ----------------------------
def test_callbacks_beyond_the_memory_window_wait_on_disk_and_leave_in_order(
        storage: Storage) -> None:
    shard = make_shard(storage, memory_window=3)
    emails = [make_notification("EMAIL", callback_url=HOOK) for _ in range(20)]
    shard.enqueue(emails, T0)
    shard.flush()
    for _ in range(20):
        [delivery] = shard.lease(lane("EMAIL"), 1, T0, 30.0)
        shard.ack([Outcome(delivery.tag, "sent", "smtp", lease=delivery.lease)], T0)
        shard.flush()
        assert len(shard._live) <= 6  # the window (3), and one read back from disk (3)
    assert shard.live_count() == 20  # twenty callbacks, most on disk only
    hooks = [d.tag for d in shard.lease(lane("WEBHOOK"), 30, T0, 30.0)]
    assert hooks == [f"{n.tag}.sent" for n in emails]


def test_deferred_callbacks_are_held_on_disk_when_memory_is_full_and_come_back_when_due(
        storage: Storage) -> None:
    shard = make_shard(storage, memory_window=2)
    hooks = [_failing_callback(shard) for _ in range(6)]
    leased = shard.lease(lane("WEBHOOK"), 6, T0, 30.0)
    assert sorted(d.tag for d in leased) == sorted(hooks)
    shard.ack([Outcome(d.tag, "defer", "none", lease=d.lease, retry_after=60.0)
               for d in leased], T0)
    shard.flush()
    assert len(shard._live) <= 2 and shard.live_count() == 6  # held: counted, not kept
    held = [storage.get(tag) for tag in hooks]
    assert sum(1 for r in held if r is not None and r.held == "deferred") >= 4
    assert shard.lease(lane("WEBHOOK"), 6, T0 + 30, 30.0) == []  # not due yet
    restarted = make_shard(storage, memory_window=2)  # a restart keeps them held, and counted
    assert restarted.live_count() == 6
    restarted.tick(T0 + 61)
    again = restarted.lease(lane("WEBHOOK"), 6, T0 + 61, 30.0)
    assert sorted(d.tag for d in again) == sorted(hooks)


def test_parked_messages_beyond_the_memory_window_wait_on_disk_until_their_user_connects(
        storage: Storage) -> None:
    shard = make_shard(storage, memory_window=2)
    mine = [make_notification("BROWSER", uid=7) for _ in range(5)]
    shard.enqueue(mine, T0)
    leased = shard.lease(lane("BROWSER"), 5, T0, 30.0)
    shard.ack([Outcome(d.tag, "park", "gateway", lease=d.lease) for d in leased], T0)
    shard.flush()
    assert len(shard._live) <= 2 and shard.live_count() == 5
    assert shard.lease(lane("BROWSER"), 5, T0 + 1, 30.0) == []  # parked, in memory or not
    assert len(shard.unpark(mine[0].tenant, "7", T0 + 2)) == 5
    shard.flush()
    back = shard.lease(lane("BROWSER"), 5, T0 + 2, 30.0)
    assert [d.tag for d in back] == [n.tag for n in mine]  # in order


# -- item 9: expiry whatever the lane --------------------------------------------------------
def test_a_paused_channels_notification_expires_and_calls_back(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS", ttl=60, callback_url=HOOK)
    shard.enqueue([notification], T0)
    shard.flush()
    shard.pause(Channel.SMS, T0)
    shard.tick(T0 + 61)  # the shard's timer
    shard.flush()
    record = storage.get(notification.tag)
    assert record is not None and record.status is Status.FAILED
    assert record.history[-1].error == "expired"
    hook = storage.get(f"{notification.tag}.failed")
    assert hook is not None and hook.status is Status.QUEUED  # the requester is told
    assert shard.live_count() == 1  # only the callback
    assert shard.counters["expired"] == 1


@pytest.mark.parametrize("where", ["on disk only", "held", "retrying", "parked"])
def test_waiting_notifications_expire_whatever_their_lane(storage: Storage, where: str) -> None:
    shard = make_shard(storage, memory_window=1 if where in ("on disk only", "held") else 100)
    channel = "BROWSER" if where == "parked" else "SMS"
    first, second = (make_notification(channel, ttl=60, uid=7) for _ in range(2))
    shard.enqueue([first, second], T0)
    if where != "on disk only":
        leased = shard.lease(lane(channel), 2, T0, 30.0)
        kind = {"held": "defer", "retrying": "retry", "parked": "park"}[where]
        shard.ack([Outcome(d.tag, kind, "x", lease=d.lease, retry_after=3600.0)
                   for d in leased], T0)
    shard.flush()
    shard.tick(T0 + 61)
    shard.flush()
    for n in (first, second):
        record = storage.get(n.tag)
        assert record is not None and record.status is Status.FAILED, where
    assert shard.live_count() == 0 and shard.depth() == {}
    assert shard.lease(lane(channel), 5, T0 + 3700, 30.0) == []


def test_expiry_is_swept_in_batches(storage: Storage) -> None:
    shard = make_shard(storage)
    shard.enqueue([make_notification("SMS", ttl=60) for _ in range(7)], T0)
    shard.flush()
    assert shard.expire_due(T0 + 61, limit=5) == 5
    shard.flush()  # the shell writes after each of its timer's rounds
    assert shard.expire_due(T0 + 61, limit=5) == 2
    shard.flush()
    assert shard.live_count() == 0


# -- item 10: receipts for retrying records; claims kept as long as the longest TTL -------------
def test_a_receipt_for_a_retrying_notification_finishes_it_so_it_is_not_sent_again(
        storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("SMS")
    shard.enqueue([notification], T0)
    assert len(shard.lease(lane("SMS"), 1, T0, 30.0)) == 1
    shard.tick(T0 + 31)  # no answer before the lease expired: counted, retried later
    assert shard.get(notification.tag, notification.tenant).status is Status.RETRYING
    assert shard.receipt(Outcome(notification.tag, "delivered", "twilio"), T0 + 32)
    shard.flush()
    record = storage.get(notification.tag)
    assert record is not None and record.status is Status.DELIVERED
    assert record.history[-1].receipt
    assert shard.lease(lane("SMS"), 1, T0 + 3600, 30.0) == []


def test_idempotency_claims_are_kept_as_long_as_a_notification_may_live(storage: Storage) -> None:
    """Sent as late as ``details.send_at`` allows (365 days), then its longest TTL (30 days)."""
    shard = make_shard(storage)
    shard.claim([("acme", "k1", "tag-on-another-shard")], T0)
    shard.flush()
    week = 7 * 86400.0
    shard.delete_final(T0 + 8 * 86400, week, 100)  # a week's retention is over
    assert shard.claimed([("acme", "k1")]) == {("acme", "k1"): "tag-on-another-shard"}
    shard.delete_final(T0 + 394 * 86400, week, 100)  # it may still be waiting to be sent
    assert shard.claimed([("acme", "k1")]) == {("acme", "k1"): "tag-on-another-shard"}
    shard.delete_final(T0 + 396 * 86400, week, 100)
    assert shard.claimed([("acme", "k1")]) == {}
