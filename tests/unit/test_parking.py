"""Parked notifications of offline users are dropped once expired, users and all."""

from __future__ import annotations

from herald.parking import Parking
from herald.record import Record
from tests.unit.conftest import T0, make_notification


def _record(uid: str, ttl: int) -> Record:
    return Record.new(make_notification(uid=uid, ttl=ttl), 1)


def test_expired_entries_leave_nothing_behind() -> None:
    parking = Parking()
    short, long_ = _record("a", 10), _record("a", 100)
    other = _record("b", 10)
    for record in (short, long_, other):
        parking.park(record)
    assert sorted(parking.expired(T0 + 10)) == sorted([short.tag, other.tag])
    assert parking.next_expiry() == T0 + 100
    assert parking.release("acme", "b") == set()  # b's only entry expired: b is gone
    assert parking.expired(T0 + 100) == [long_.tag]
    assert parking.release("acme", "a") == set() and parking.next_expiry() is None


def test_released_entries_do_not_expire_later() -> None:
    parking = Parking()
    record = _record("a", 10)
    parking.park(record)
    assert parking.release("acme", "a") == {record.tag}
    assert parking.expired(T0 + 10) == []
