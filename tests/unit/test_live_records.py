"""The live-record map of a shard: waiting records packed, each read back exactly as it was."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from herald.attempt import Attempt
from herald.channels import Channel
from herald.live_records import LiveRecords, pack, packable, unpack
from herald.outcome import Outcome
from herald.queue import QueueShard
from herald.record import Record
from herald.retry import RetryPolicy
from herald.status import Status
from herald.storage import SQLiteStorage, Storage
from tests.unit.conftest import T0, TENANT, lane, make_notification, make_shard

POLICY = {"SMS": RetryPolicy(base_seconds=2.0, cap_seconds=20.0, max_attempts=3)}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)
times = st.floats(0, 4e9)
attempts = st.builds(Attempt, at=times, outcome=st.sampled_from(("retry", "sent", "revived")),
                     provider=st.none() | st.text(), attempt=st.none() | st.integers(1, 9),
                     error=st.none() | st.text(), code=st.none() | st.text(),
                     provider_id=st.none() | st.text(min_size=1),
                     info=st.dictionaries(st.text(), json_values, max_size=2),
                     receipt=st.booleans())
records = st.builds(
    Record, tag=st.text(min_size=1), tenant=st.text(), type=st.text(),
    channel=st.sampled_from(list(Channel)), priority=st.integers(0, 9),
    seq=st.integers(1, 2**62), uid=st.text(), recipient=st.none() | st.text(),
    idempotency_key=st.none() | st.text(), created_at=times, expires_at=times,
    payload=st.dictionaries(st.text(), json_values, max_size=4),
    status=st.sampled_from((Status.QUEUED, Status.RETRYING)), attempts=st.integers(0, 9),
    not_before=times, lease_until=times, updated_at=times, provider_id=st.none() | st.text(),
    history=st.lists(attempts, max_size=3), lease_token=times, deferrals=st.integers(0, 9),
    held=st.none(), size=st.integers(0, 2**40))


@given(records)
def test_a_packed_record_reads_back_equal_field_by_field(record: Record) -> None:
    back = unpack(record.tag, pack(record))
    assert back == record and back.size == record.size
    assert type(back.channel) is Channel and type(back.status) is Status
    assert all(type(getattr(back, f.name)) is type(getattr(record, f.name))
               for f in dataclasses.fields(Record) if f.name not in ("payload", "history"))


def _record(i: int, **changes: Any) -> Record:
    notification = make_notification("EMAIL", uid=i, now=T0 + i)
    return dataclasses.replace(Record.new(notification, seq=i), **changes)


def _deep_size(value: object) -> int:
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(_deep_size(k) + _deep_size(v) for k, v in value.items())
    if isinstance(value, list):
        return size + sum(_deep_size(v) for v in value)
    if isinstance(value, Record):
        return size + sum(_deep_size(getattr(value, f.name)) for f in dataclasses.fields(Record))
    return size


def test_waiting_records_beyond_keep_are_packed_and_cost_under_half() -> None:
    live = LiveRecords(keep=2)
    records = [_record(i) for i in range(5)]
    for record in records:
        live[record.tag] = record
    live.pack(records)
    assert (len(live), live.packed) == (5, 3)  # the first two (leased first) stay objects
    assert not isinstance(live._items[records[1].tag], bytes)
    packed = live._items[records[4].tag]
    assert isinstance(packed, bytes)
    assert sys.getsizeof(packed) * 2 < _deep_size(records[4])


def test_a_read_unpacks_for_good_so_a_change_is_the_maps() -> None:
    live = LiveRecords(keep=0)
    record = _record(1)
    live[record.tag] = record
    live.pack([record])
    first = live.get(record.tag)
    assert first == record and first is not record and live.packed == 0
    assert first is not None
    first.status = Status.SENDING
    assert live[record.tag] is first  # the same object: a change is not lost
    live.pack([first])
    assert live.packed == 0  # being sent: never packed


def test_only_live_waiting_records_with_finite_floats_are_packed() -> None:
    live = LiveRecords(keep=0)
    held, sending = _record(1, held="deferred"), _record(2, status=Status.SENDING)
    endless, gone, stale = _record(3, expires_at=float("inf")), _record(4), _record(5)
    for record in (held, sending, endless, stale):
        live[record.tag] = record
    live[stale.tag] = _record(5)  # replaced: the old object is not the live one
    live.pack([held, sending, endless, gone, stale])
    assert live.packed == 0 and not packable(endless) and gone.tag not in live


def test_discard_and_replace_keep_the_packed_count() -> None:
    live = LiveRecords(keep=0)
    a, b = _record(1), _record(2)
    live[a.tag], live[b.tag] = a, b
    live.pack([a, b])
    live.discard(a.tag)
    live[b.tag] = b
    live.discard("unknown")
    assert (len(live), live.packed) == (1, 0)


def test_waiting_since_reads_channel_and_age_without_unpacking() -> None:
    live = LiveRecords(keep=0)
    sms = dataclasses.replace(_record(1), channel=Channel.SMS, tenant='a,"b",[c]')
    sending = _record(2, status=Status.SENDING)
    email = _record(3)
    for record in (sms, sending, email):
        live[record.tag] = record
    live.pack([sms, email])
    assert live.packed == 2
    assert list(live.waiting_since()) == [(Channel.SMS, sms.created_at), None,
                                          (Channel.EMAIL, email.created_at)]
    assert live.packed == 2


def test_a_shard_that_packs_answers_as_one_that_does_not(storage: Storage, tmp_path: Path) -> None:
    """Every waiting record packed at each flush (``keep_unpacked=0``) against none packed (a
    second shard on its own store): the same positions, status views, oldest waiting, leases
    (asap first, then acceptance order; a retry after its ``not_before``) and counts."""
    plain = make_shard(SQLiteStorage(tmp_path / "plain.db", "OFF"), policies=POLICY)
    packing = make_shard(storage, policies=POLICY, keep_unpacked=0)
    batch = [make_notification(channel, now=T0 + i, uid=i % 3, asap="true" if i % 4 == 0 else None)
             for i, channel in enumerate(["SMS", "EMAIL", "BROWSER"] * 8)]

    def both(step: Callable[[QueueShard], Any]) -> Any:
        answers = [step(shard) for shard in (plain, packing)]
        for shard in (plain, packing):
            shard.flush()
        assert answers[0] == answers[1]
        return answers[1]

    both(lambda s: s.enqueue(batch, T0 + 30))
    assert packing._live.packed == len(batch) and plain._live.packed == 0
    both(lambda s: [s.position(n.tag) for n in batch])
    both(lambda s: [s.get(n.tag, TENANT).public() for n in batch[:6]])
    both(lambda s: s.oldest_waiting())
    first = both(lambda s: s.lease(lane("SMS"), 3, T0 + 31, 30.0))
    assert [d.priority for d in first] == [8, 8, 4]
    both(lambda s: s.ack([Outcome(d.tag, "retry", "capture", lease=d.lease) for d in first]
                         + [Outcome(batch[1].tag, "sent", "capture")], T0 + 32))
    both(lambda s: s.cancel(batch[4].tag, TENANT, T0 + 32).public())
    for now in (T0 + 33, T0 + 100):
        for name in ("SMS", "EMAIL", "BROWSER"):
            both(lambda s, name=name, now=now: [(d.tag, d.attempt, d.payload) for d in
                                                s.lease(lane(name), 100, now, 30.0)])
    both(lambda s: (s.depth(), s.live_count(), dict(s.counters)))
