"""Send later (issue 20, 1): ``details.send_at`` read at intake, kept by the shard until then —
not leased before, in the past means now, far-future work on disk only, survives a restart, can
be cancelled until then, never sent twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald.errors import ValidationError
from herald.models import MAX_SEND_AHEAD_SECONDS, send_at_epoch
from herald.outcome import Outcome
from herald.status import Status
from herald.storage import Storage
from herald.waiting_work import SCHEDULED_IN_MEMORY
from tests.unit.conftest import T0, lane, make_notification, make_shard

ISO = datetime.fromtimestamp(T0 + 3600, UTC)


@pytest.mark.parametrize("value", [
    ISO.isoformat(),  # +00:00
    ISO.isoformat().replace("+00:00", "Z"),
    ISO.astimezone(timezone := datetime.now().astimezone().tzinfo).isoformat(),
    (ISO.replace(tzinfo=None) + timedelta(hours=1)).isoformat() + "+01:00",
    T0 + 3600, int(T0 + 3600), str(T0 + 3600),
])
def test_send_at_reads_iso_8601_with_an_offset_and_epoch_seconds(value: object) -> None:
    assert send_at_epoch(value, T0) == pytest.approx(T0 + 3600)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "says"), [
    (ISO.replace(tzinfo=None).isoformat(), "needs an offset"),
    ("next tuesday", "not an ISO 8601"),
    ("nan", "not a time"),
    (T0 + MAX_SEND_AHEAD_SECONDS + 1, "at most 365 days ahead"),
])
def test_a_bad_send_at_is_refused_naming_the_field(value: object, says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        send_at_epoch(value, T0)  # type: ignore[arg-type]
    assert refused.value.field == "details.send_at" and says in str(refused.value)


def test_intake_refuses_a_bad_send_at_with_the_field_and_a_boolean_too() -> None:
    for value in (True, "2026-13-40T00:00:00Z", [1]):
        with pytest.raises(ValidationError) as refused:
            make_notification("EMAIL", send_at=value)
        assert refused.value.field == "details.send_at"


def test_a_time_past_means_now_and_the_ttl_runs_from_the_send_time() -> None:
    assert make_notification("EMAIL", send_at=T0 - 60).not_before == 0.0
    later = make_notification("EMAIL", send_at=T0 + 7200, ttl=600)
    assert later.not_before == T0 + 7200
    assert later.expires_at == T0 + 7200 + 600


def test_not_leased_before_its_time_then_leased_once(storage: Storage) -> None:
    shard = make_shard(storage)
    later = make_notification("EMAIL", send_at=T0 + 30)
    now_one = make_notification("EMAIL")
    shard.enqueue([later, now_one], T0)
    shard.flush()
    view = shard.get(later.tag, later.tenant).public()
    assert (view["status"], view["not_before"]) == ("queued", T0 + 30)
    assert [d.tag for d in shard.lease(lane("EMAIL"), 10, T0 + 29, 30.0)] == [now_one.tag]
    shard.tick(T0 + 30)
    [delivery] = shard.lease(lane("EMAIL"), 10, T0 + 30, 30.0)
    assert delivery.tag == later.tag
    shard.ack([Outcome(later.tag, "sent", "smtp", lease=delivery.lease)], T0 + 31)
    shard.tick(T0 + 3600)
    assert shard.lease(lane("EMAIL"), 10, T0 + 3600, 30.0) == []
    assert shard.get(later.tag, later.tenant).status is Status.SENT


def test_far_future_work_waits_on_disk_only_and_survives_a_restart(storage: Storage) -> None:
    shard = make_shard(storage)
    due = T0 + SCHEDULED_IN_MEMORY + 3600
    far = [make_notification("EMAIL", send_at=due) for _ in range(3)]
    near = make_notification("EMAIL", send_at=T0 + 10)
    shard.enqueue([*far, near], T0)
    shard.flush()
    assert all(shard._live.get(n.tag) is None for n in far)
    assert shard._live.get(near.tag) is not None
    assert shard.live_count() == 4
    restarted = make_shard(storage, now=T0 + 20)
    assert restarted.live_count() == 4
    restarted.tick(T0 + 20)
    [first] = restarted.lease(lane("EMAIL"), 10, T0 + 20, 30.0)
    assert first.tag == near.tag
    restarted.ack([Outcome(first.tag, "sent", "smtp", lease=first.lease)], T0 + 21)
    restarted.tick(due - 1)
    assert restarted.lease(lane("EMAIL"), 10, due - 1, 30.0) == []
    restarted.tick(due + 1)
    leased = restarted.lease(lane("EMAIL"), 10, due + 1, 30.0)
    assert sorted(d.tag for d in leased) == sorted(n.tag for n in far)


def test_cancelled_until_then_and_never_sent(storage: Storage) -> None:
    shard = make_shard(storage)
    near = make_notification("EMAIL", send_at=T0 + 10)
    far = make_notification("EMAIL", send_at=T0 + 86400)
    shard.enqueue([near, far], T0)
    shard.flush()
    for notification in (near, far):
        assert shard.cancel(notification.tag, notification.tenant, T0 + 5).status is Status.CANCELLED
    shard.flush()
    shard.tick(T0 + 86401)
    assert shard.lease(lane("EMAIL"), 10, T0 + 86401, 30.0) == []
    assert shard.live_count() == 0
