"""One preference changed in one call (``RecipientBook.set_preference``, what a one-click
unsubscribe does at the user's shard), over every storage: the rest of the user's settings kept,
the next email of that category suppressed, kept across a restart, and refused as a PUT body
would be when it could not load again."""

from __future__ import annotations

import pytest

from herald.errors import ValidationError
from herald.recipients import MAX_CATEGORIES, parse_recipient
from herald.status import Status
from herald.storage import Storage
from tests.unit.conftest import TENANT, make_notification, make_shard

NOW = 1_800_000_000.0
UID = "76143021"


def test_turning_one_category_off_keeps_everything_else_and_suppresses_it(storage: Storage) -> None:
    shard = make_shard(storage, now=NOW)
    settings = {"timezone": "Europe/Berlin", "quiet_hours": {"start": "22:00", "end": "07:00"},
                "preferences": {"NEWS": {"sms": False}}}
    shard.recipients.put(TENANT, UID, parse_recipient(settings), NOW)

    changed = shard.recipients.set_preference(TENANT, UID, "CM", "email", False, NOW + 1)
    expected = settings | {"preferences": {"NEWS": {"sms": False}, "CM": {"email": False}}}
    assert changed.public() == expected
    assert shard.recipients.get(TENANT, UID) == changed

    email = make_notification("EMAIL", uid=UID, now=NOW + 2)
    shard.enqueue([email], NOW + 2)
    shard.flush()
    assert shard.get(email.tag, TENANT).status is Status.SUPPRESSED
    restarted = make_shard(storage, now=NOW + 3)
    assert restarted.recipients.get(TENANT, UID) == changed


def test_a_user_without_settings_gets_just_that_one(storage: Storage) -> None:
    shard = make_shard(storage, now=NOW)
    changed = shard.recipients.set_preference(TENANT, UID, "CM", "email", False, NOW)
    assert changed.public() == {"timezone": None, "quiet_hours": None,
                                "preferences": {"CM": {"email": False}}}
    assert shard.recipients.get("another-tenant", UID) is None
    again = shard.recipients.set_preference(TENANT, UID, "CM", "email", False, NOW + 1)
    assert again == changed
    back_on = shard.recipients.set_preference(TENANT, UID, "CM", "email", True, NOW + 2)
    assert back_on.allows("CM", "email")
    assert make_shard(storage, now=NOW + 3).recipients.get(TENANT, UID) == back_on


@pytest.mark.parametrize(("category", "channel"), [("C" * 65, "email"), ("CM", "pigeon")])
def test_what_a_put_body_could_not_say_is_refused_and_nothing_kept(
        storage: Storage, category: str, channel: str) -> None:
    shard = make_shard(storage, now=NOW)
    with pytest.raises(ValidationError):
        shard.recipients.set_preference(TENANT, UID, category, channel, False, NOW)
    assert shard.recipients.get(TENANT, UID) is None
    assert make_shard(storage, now=NOW + 1).recipients.get(TENANT, UID) is None


def test_one_category_too_many_is_refused(storage: Storage) -> None:
    shard = make_shard(storage, now=NOW)
    full = {"preferences": {f"C{i}": {"email": False} for i in range(MAX_CATEGORIES)}}
    shard.recipients.put(TENANT, UID, parse_recipient(full), NOW)
    with pytest.raises(ValidationError):
        shard.recipients.set_preference(TENANT, UID, "ONE_MORE", "email", False, NOW)
    assert shard.recipients.get(TENANT, UID) == parse_recipient(full)
