"""A shard's memory window: what waits beyond it stays on disk only, and leaves in order."""

from __future__ import annotations

from herald.channels import Channel
from herald.memory_window import BeyondWindow
from herald.outcome import Outcome
from herald.retry import RetryPolicy
from herald.storage import Storage
from tests.unit.conftest import T0, lane, make_notification, make_shard

SMS = Channel.SMS


def _fill(storage: Storage, count: int, memory_window: int, **kwargs: object) -> list[str]:
    shard = make_shard(storage, memory_window=memory_window)
    batch = [make_notification("SMS", now=T0, **kwargs) for _ in range(count)]  # type: ignore[arg-type]
    shard.enqueue(batch, T0)
    shard.flush()
    return [n.tag for n in batch]


def test_beyond_the_window_only_counts_are_kept(storage: Storage) -> None:
    shard = make_shard(storage, memory_window=3)
    batch = [make_notification("SMS", now=T0) for _ in range(10)]
    results = shard.enqueue(batch, T0)
    shard.flush()
    assert [r.pos for r in results] == list(range(1, 11))
    assert shard.live_count() == 10
    assert len(shard._live) == 3  # the rest is on disk only
    assert shard.depth()["SMS"]["queued"] == 10
    leased = shard.lease(lane("SMS"), 10, T0, 30.0)
    shard.flush()
    assert [d.tag for d in leased] == [n.tag for n in batch]


def test_asap_overtakes_what_waits_beyond_the_window(storage: Storage) -> None:
    shard = make_shard(storage, memory_window=2)
    normal = [make_notification("SMS", now=T0) for _ in range(6)]
    shard.enqueue(normal, T0)
    urgent = make_notification("SMS", now=T0, asap="true")
    [accepted] = shard.enqueue([urgent], T0)
    shard.flush()
    assert accepted.pos == 1
    [first] = shard.lease(lane("SMS"), 1, T0, 30.0)
    assert first.tag == urgent.tag
    rest = shard.lease(lane("SMS"), 10, T0, 30.0)
    assert [d.tag for d in rest] == [n.tag for n in normal]


def test_a_restart_reads_a_window_not_all_that_waits(storage: Storage) -> None:
    tags = _fill(storage, 50, memory_window=5)
    shard = make_shard(storage, memory_window=5)
    assert len(shard._live) <= 5
    assert shard.live_count() == 50 and shard.depth()["SMS"]["queued"] == 50
    leased = shard.lease(lane("SMS"), 50, T0, 30.0)
    shard.flush()
    assert [d.tag for d in leased] == tags
    assert shard.live_count() == 50 and shard.depth()["SMS"]["sending"] == 50


def test_a_notification_cancelled_on_disk_is_not_read_back(storage: Storage) -> None:
    shard = make_shard(storage, memory_window=2)
    batch = [make_notification("SMS", now=T0) for _ in range(5)]
    shard.enqueue(batch, T0)
    shard.flush()
    shard.cancel(batch[3].tag, batch[3].tenant, T0)
    shard.flush()
    assert shard.live_count() == 4
    leased = shard.lease(lane("SMS"), 10, T0, 30.0)
    assert [d.tag for d in leased] == [n.tag for n in batch if n is not batch[3]]
    assert shard.live_count() == 4  # all sending now


def test_a_retry_newer_than_what_waits_on_disk_goes_behind_it(storage: Storage) -> None:
    """B (seq 2) was being sent when the shard restarted with A (retrying) and C on disk; B's
    lease expires: it goes back to disk, and leaves after A and before C, by acceptance."""
    policies = {"SMS": RetryPolicy(base_seconds=1.0, cap_seconds=1.0, max_attempts=5)}
    shard = make_shard(storage, policies=policies, memory_window=10)
    a, b, c = (make_notification("SMS", now=T0) for _ in range(3))
    shard.enqueue([a, b, c], T0)
    [first] = shard.lease(lane("SMS"), 1, T0, 30.0)
    shard.ack([Outcome(first.tag, "retry", "capture", lease=first.lease)], T0)
    [second] = shard.lease(lane("SMS"), 1, T0, 30.0)
    assert (first.tag, second.tag) == (a.tag, b.tag)
    shard.flush()
    shard = make_shard(storage, policies=policies, now=T0, memory_window=1)  # a restart
    assert b.tag in shard._live and c.tag not in shard._live
    later = T0 + 100.0  # B's lease expired (B retries a second later), A's retry is due
    assert [d.tag for d in shard.lease(lane("SMS"), 1, later, 30.0)] == [a.tag]
    shard.flush()
    order = [d.tag for d in shard.lease(lane("SMS"), 10, later + 5.0, 30.0)]
    assert order == [b.tag, c.tag]


def test_beyond_window_counts_and_order_rule() -> None:
    beyond = BeyondWindow()
    assert not beyond.stays_on_disk(SMS, 4, 1, memory_full=False)
    assert beyond.stays_on_disk(SMS, 4, 1, memory_full=True)
    assert not beyond.stays_on_disk(Channel.BROWSER, 4, 1, memory_full=True)
    beyond.took(SMS, 4, 10)
    beyond.add(SMS, 4, 3)
    assert beyond.stays_on_disk(SMS, 4, 11, memory_full=False)  # behind older ones on disk
    assert not beyond.stays_on_disk(SMS, 4, 9, memory_full=False)  # older than all of them
    assert beyond.ahead(SMS, 0) == 3 and beyond.ahead(SMS, 5) == 0
    assert beyond.highest(SMS) == 4 and beyond.levels(SMS) == [4]
    beyond.remove(SMS, 4, 3)
    assert beyond.total == 0 and beyond.highest(SMS) is None


def test_an_express_lease_takes_only_asap_work(storage: Storage) -> None:
    """A channel actor's express slots lease asap (and higher) only, from memory or disk."""
    shard = make_shard(storage, memory_window=2)
    normal = [make_notification("SMS", now=T0) for _ in range(5)]
    shard.enqueue(normal, T0)
    assert shard.lease(lane("SMS"), 2, T0, 30.0, min_priority=8) == []
    urgent = make_notification("SMS", now=T0, asap="true")  # on disk: memory is full
    shard.enqueue([urgent], T0)
    shard.flush()
    assert [d.tag for d in shard.lease(lane("SMS"), 2, T0, 30.0, min_priority=8)] == [urgent.tag]
    assert [d.tag for d in shard.lease(lane("SMS"), 9, T0, 30.0)] == [n.tag for n in normal]


def test_a_lease_reads_past_a_page_of_records_memory_holds_already(storage: Storage) -> None:
    """Found by the small-window queue machine: a restart reads two leased SMS into a window of
    two; a third waits on disk only. Once the leases expire (retries, not due yet), the first
    page read back from disk holds just those two: the lease must read on and take the third."""
    policies = {"SMS": RetryPolicy(base_seconds=2.0, cap_seconds=20.0, max_attempts=2)}
    shard = make_shard(storage, policies=policies, memory_window=2)
    shard.enqueue([make_notification("SMS", now=T0) for _ in range(2)], T0)
    assert len(shard.lease(lane("SMS"), 2, T0, 10.0)) == 2
    shard.flush()
    shard = make_shard(storage, policies=policies, now=T0, memory_window=2)  # a restart
    third = make_notification("SMS", now=T0)
    shard.enqueue([third], T0)
    shard.flush()
    later = T0 + 11.0  # both leases expired; their retries wait a backoff of 2 s or more
    shard.tick(later)
    shard.flush()
    assert [d.tag for d in shard.lease(lane("SMS"), 1, later, 10.0)] == [third.tag]
