"""The inbox feed's rules (``herald.inbox``): what is in it, page requests and read marks parsed
with a 422 naming the field, the cursor, and an item's rendered view."""

from __future__ import annotations

import pytest

from herald.errors import ValidationError
from herald.inbox import (
    MAX_LIMIT,
    FeedPage,
    FeedQuery,
    ReadMarks,
    feed_item,
    feed_query,
    in_inbox,
    read_marks,
)
from herald.record import Record
from tests.unit.conftest import TENANT, make_notification


def record(channel: str = "BROWSER", **details: object) -> Record:
    return Record.new(make_notification(channel, **details), seq=7)


def test_browser_notifications_are_in_the_feed_and_others_only_when_asked() -> None:
    assert in_inbox(record("BROWSER"))
    assert not in_inbox(record("EMAIL"))
    assert in_inbox(record("EMAIL", inbox=True))
    assert not in_inbox(record("SMS", inbox=False))


def test_details_inbox_must_be_a_boolean() -> None:
    with pytest.raises(ValidationError) as refused:
        make_notification("EMAIL", inbox="yes")
    assert refused.value.field == "details.inbox"


def test_a_page_request_from_query_parameters() -> None:
    assert feed_query(TENANT, "u", {}) == FeedQuery(TENANT, "u", False, 20, None)
    assert feed_query(TENANT, "u", {"unread": "true", "limit": "5"}) == FeedQuery(
        TENANT, "u", True, 5, None)


@pytest.mark.parametrize(("params", "field"), [
    ({"unread": "maybe"}, "unread"), ({"limit": "0"}, "limit"),
    ({"limit": str(MAX_LIMIT + 1)}, "limit"), ({"limit": "-3"}, "limit"),
    ({"limit": "ten"}, "limit"), ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": "%%%"}, "cursor"),
])
def test_a_wrong_page_request_names_its_field(params: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        feed_query(TENANT, "u", params)
    assert refused.value.field == field


def test_the_next_cursor_starts_the_next_page_after_the_last_item() -> None:
    item = feed_item(record(), None)
    page = FeedPage((item,), unread=3, next_before=41).public()
    assert page["unread"] == 3 and isinstance(page["next"], str)
    assert feed_query(TENANT, "u", {"cursor": page["next"]}).before == 41
    assert FeedPage((item,), 0, None).public()["next"] is None


def test_read_marks_name_tags_or_all() -> None:
    assert read_marks({"tags": ["a", "b", "a"]}) == ReadMarks(("a", "b"))
    assert read_marks({"all": True}) == ReadMarks(None)


@pytest.mark.parametrize(("body", "field"), [
    ({}, "tags"), ({"tags": ["a"], "all": True}, "tags"), ({"tags": []}, "tags"),
    ({"tags": "a"}, "tags"), ({"tags": [1]}, "tags"), ({"all": False}, "all"),
    ({"tags": ["a"], "extra": 1}, "tags"), (["a"], "tags"),
])
def test_wrong_read_marks_name_their_field(body: object, field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        read_marks(body)
    assert refused.value.field == field


def test_an_item_shows_its_text_as_the_user_sees_it() -> None:
    view = feed_item(record(), None).public()
    assert (view["title"], view["content"], view["read"]) == ("New Message", "Hi Bob", False)
    assert view["channel"] == "BROWSER" and view["status"] == "queued"
    assert feed_item(record(), 5.0).public()["read_at"] == 5.0
