"""What a shard does with its users' settings (issue 20, 2), over every storage: a category
turned off ends ``suppressed`` at once (``reason: preference``), required categories go anyway,
quiet hours hold a normal notification until they end and let an asap one through; settings
survive a restart."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from herald.outcome import Outcome
from herald.queue import QueueShard
from herald.recipients import parse_recipient
from herald.status import Status
from herald.storage import Storage
from tests.unit.conftest import TENANT, lane, make_notification, make_shard

NIGHT = datetime.fromisoformat("2026-12-07T23:30:00+01:00").timestamp()  # Berlin, quiet
MORNING = datetime.fromisoformat("2026-12-08T07:00:00+01:00").timestamp()
UID = "76143021"


def with_settings(storage: Storage, body: dict[str, object]) -> QueueShard:
    shard = make_shard(storage, now=NIGHT)
    shard.recipients.put(TENANT, UID, parse_recipient(body), NIGHT)
    return shard


def test_a_category_turned_off_ends_suppressed_and_is_never_sent(storage: Storage) -> None:
    shard = with_settings(storage, {"preferences": {"CM": {"email": False}}})
    off = make_notification("EMAIL", uid=UID, now=NIGHT)
    other_channel = make_notification("SMS", uid=UID, now=NIGHT)
    [accepted, _] = shard.enqueue([off, other_channel], NIGHT)
    shard.flush()
    assert accepted.tag == off.tag and not accepted.duplicate
    view = shard.get(off.tag, TENANT).public()
    assert (view["status"], view["reason"]) == ("suppressed", "preference")
    assert view["history"][-1]["outcome"] == "suppressed"
    assert shard.counters["suppressed"] == 1 and shard.counters["accepted"] == 2
    assert shard.lease(lane("EMAIL"), 10, NIGHT, 30.0) == []
    assert [d.tag for d in shard.lease(lane("SMS"), 10, NIGHT, 30.0)] == [other_channel.tag]
    assert storage.get(off.tag).status is Status.SUPPRESSED  # type: ignore[union-attr]


def test_a_required_category_ignores_preferences(storage: Storage) -> None:
    shard = with_settings(storage, {"preferences": {"OTP": {"email": False}}})
    required = replace(make_notification("EMAIL", uid=UID, now=NIGHT), type="OTP_EMAIL",
                       category="OTP")
    shard.enqueue([required], NIGHT)
    assert [d.tag for d in shard.lease(lane("EMAIL"), 10, NIGHT, 30.0)] == [required.tag]


def test_quiet_hours_hold_a_normal_one_until_they_end_and_let_asap_through(
        storage: Storage) -> None:
    shard = with_settings(storage, {"timezone": "Europe/Berlin",
                                    "quiet_hours": {"start": "22:00", "end": "07:00"}})
    normal = make_notification("EMAIL", uid=UID, now=NIGHT)
    urgent = make_notification("EMAIL", uid=UID, now=NIGHT, asap="yes")
    shard.enqueue([normal, urgent], NIGHT)
    shard.flush()
    view = shard.get(normal.tag, TENANT).public()
    assert (view["status"], view["not_before"]) == ("queued", MORNING)
    [leased] = shard.lease(lane("EMAIL"), 10, NIGHT, 30.0)
    assert leased.tag == urgent.tag
    shard.ack([Outcome(leased.tag, "sent", "smtp", lease=leased.lease)], NIGHT + 1)
    shard.tick(MORNING - 1)
    assert shard.lease(lane("EMAIL"), 10, MORNING - 1, 30.0) == []
    shard.tick(MORNING)
    assert [d.tag for d in shard.lease(lane("EMAIL"), 10, MORNING, 30.0)] == [normal.tag]


def test_settings_survive_a_restart_and_can_be_forgotten(storage: Storage) -> None:
    shard = with_settings(storage, {"preferences": {"CM": {"browser": False}}})
    restarted = make_shard(storage, now=NIGHT + 5)
    recipient = restarted.recipients.get(TENANT, UID)
    assert recipient is not None and not recipient.allows("CM", "browser")
    assert restarted.recipients.get("another-tenant", UID) is None
    assert restarted.recipients.forget(TENANT, UID, NIGHT + 6)
    assert make_shard(storage, now=NIGHT + 7).recipients.get(TENANT, UID) is None
    del shard
