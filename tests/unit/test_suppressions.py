"""Suppressed contacts (issue 20, 4), over every storage: a notification to a suppressed contact
ends ``suppressed`` with the suppression's reason; an SMS STOP holds for the number texted only;
the list survives a restart and can be lifted."""

from __future__ import annotations

from herald.status import Status
from herald.storage import Storage
from herald.suppressions import BOUNCED, EVERY_TENANT, STOP, Suppression, SuppressionList
from tests.unit.conftest import T0, TENANT, lane, make_notification, make_shard

SENDER, OTHER_SENDER = "+15005550006", "+15005550009"


def test_a_suppressed_address_is_never_mailed_and_the_reason_is_kept(storage: Storage) -> None:
    shard = make_shard(storage)
    shard.suppressions.add(TENANT, Suppression("bob@example.com", BOUNCED, T0), T0)
    mail = make_notification("EMAIL", to="Bob@Example.com")
    other_tenant = make_notification("EMAIL", to="bob@example.com", tenant="another")
    shard.enqueue([mail, other_tenant], T0)
    shard.flush()
    view = shard.get(mail.tag, TENANT).public()
    assert (view["status"], view["reason"]) == ("suppressed", "bounced")
    assert [d.tag for d in shard.lease(lane("EMAIL"), 10, T0, 30.0)] == [other_tenant.tag]


def test_an_sms_stop_holds_for_the_number_texted_only(storage: Storage) -> None:
    shard = make_shard(storage)
    shard._sms_sender = SENDER
    number = "+14155550100"
    shard.suppressions.add(EVERY_TENANT, Suppression(number, STOP, T0, SENDER), T0)
    default_sender = make_notification("SMS", to=number)
    same_sender = make_notification("SMS", to=number, **{"from": SENDER})
    other_sender = make_notification("SMS", to=number, **{"from": OTHER_SENDER})
    shard.enqueue([default_sender, same_sender, other_sender], T0)
    shard.flush()
    for stopped in (default_sender, same_sender):
        assert shard.get(stopped.tag, TENANT).status is Status.SUPPRESSED
        assert shard.get(stopped.tag, TENANT).public()["reason"] == "stop"
    assert [d.tag for d in shard.lease(lane("SMS"), 10, T0, 30.0)] == [other_sender.tag]


def test_the_list_survives_a_restart_and_can_be_lifted(storage: Storage) -> None:
    shard = make_shard(storage)
    shard.suppressions.add(TENANT, Suppression("bob@example.com", BOUNCED, T0), T0)
    shard.suppressions.add(EVERY_TENANT, Suppression("+14155550100", STOP, T0 + 1, SENDER), T0)
    again = SuppressionList(storage.documents())
    assert [e.contact for e in again.of(TENANT)] == ["+14155550100", "bob@example.com"]
    assert again.remove(TENANT, "BOB@example.com", T0 + 2) == 1
    assert again.remove(TENANT, "bob@example.com", T0 + 2) == 0
    assert again.remove(EVERY_TENANT, "+14155550100", T0 + 2, sender=OTHER_SENDER) == 0
    assert again.remove(EVERY_TENANT, "+14155550100", T0 + 2, sender=SENDER) == 1
    assert list(SuppressionList(storage.documents()).of(TENANT)) == []
    mail = make_notification("EMAIL", to="bob@example.com")
    restarted = make_shard(storage)
    restarted.enqueue([mail], T0 + 3)
    assert [d.tag for d in restarted.lease(lane("EMAIL"), 10, T0 + 3, 30.0)] == [mail.tag]
