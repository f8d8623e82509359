"""A bounce or complaint at the shard of its email (issue 20, 4), over every storage: a hard
bounce turns a sent email ``bounced`` and names the address to suppress; a complaint turns the
category off for email for its user; a soft bounce and other channels change nothing; a report
applied twice changes nothing more."""

from __future__ import annotations

from herald.bounce_reports import BounceKind, BounceReport
from herald.outcome import Outcome
from herald.queue import QueueShard
from herald.status import Status
from herald.storage import Storage
from herald.suppressions import BOUNCED, COMPLAINED
from tests.unit.conftest import T0, TENANT, lane, make_notification, make_shard

ADDRESS = "bob@example.com"


def _sent_email(shard: QueueShard) -> str:
    notification = make_notification("EMAIL", to=ADDRESS, uid="u-7")
    shard.enqueue([notification], T0)
    [delivery] = shard.lease(lane("EMAIL"), 1, T0, 30.0)
    shard.ack([Outcome(delivery.tag, "sent", "smtp", lease=delivery.lease)], T0 + 1)
    shard.flush()
    return notification.tag


def _report(kind: BounceKind, tag: str, status: str | None = "5.1.1") -> BounceReport:
    return BounceReport(kind, tag, ADDRESS, status, "550 5.1.1 no such user")


def test_a_hard_bounce_makes_a_sent_email_bounced_and_names_the_address(storage: Storage) -> None:
    shard = make_shard(storage)
    tag = _sent_email(shard)
    found = shard.bounce(_report(BounceKind.HARD, tag), T0 + 60)
    shard.flush()
    assert found is not None and found[0] == TENANT
    assert (found[1].contact, found[1].reason) == (ADDRESS, BOUNCED)
    view = shard.get(tag, TENANT).public()
    assert (view["status"], view["reason"]) == ("bounced", "5.1.1")
    assert view["history"][-1]["outcome"] == "bounced"
    assert storage.get(tag).status is Status.BOUNCED  # type: ignore[union-attr]
    assert shard.bounce(_report(BounceKind.HARD, tag), T0 + 61) is not None  # sent again: same
    assert shard.counters["bounced"] == 1


def test_a_complaint_turns_the_category_off_for_email(storage: Storage) -> None:
    shard = make_shard(storage)
    tag = _sent_email(shard)
    found = shard.bounce(_report(BounceKind.COMPLAINT, tag, None), T0 + 60)
    assert found is not None and found[1].reason == COMPLAINED
    recipient = shard.recipients.get(TENANT, "u-7")
    assert recipient is not None and not recipient.allows("CM", "email")
    assert recipient.allows("CM", "sms")
    assert shard.get(tag, TENANT).status is Status.SENT  # it was delivered, after all


def test_soft_bounces_unknown_tags_and_other_channels_change_nothing(storage: Storage) -> None:
    shard = make_shard(storage)
    tag = _sent_email(shard)
    assert shard.bounce(_report(BounceKind.SOFT, tag, "4.2.2"), T0 + 60) is None
    assert shard.get(tag, TENANT).status is Status.SENT
    assert shard.bounce(_report(BounceKind.HARD, "0000dead-beef-4000-8000-000000000000"),
                        T0 + 60) is None
    sms = make_notification("SMS", uid="u-8")
    shard.enqueue([sms], T0)
    assert shard.bounce(_report(BounceKind.HARD, sms.tag), T0 + 60) is None
