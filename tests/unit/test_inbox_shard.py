"""A shard's inbox feeds over every storage (issue 20, 5): newest first in pages, unread counted,
marked read by tag or all, one user's and one tenant's only; suppressed, cancelled and not yet
due notifications are not listed; read marks survive a restart and the shard's own updates."""

from __future__ import annotations

from herald.inbox import FeedQuery, ReadMarks
from herald.outcome import Outcome
from herald.queue import QueueShard
from herald.recipients import parse_recipient
from herald.storage import Storage
from tests.unit.conftest import T0, TENANT, lane, make_notification, make_shard

UID = "42"


def feed(shard: QueueShard, **options: object) -> dict[str, object]:
    return shard.feed(FeedQuery(TENANT, UID, **options), T0 + 5).public()  # type: ignore[arg-type]


def tags(page: dict[str, object]) -> list[str]:
    return [item["tag"] for item in page["items"]]  # type: ignore[attr-defined, index]


def test_pages_newest_first_with_unread_counted(storage: Storage) -> None:
    shard = make_shard(storage)
    sent = [make_notification("BROWSER", uid=UID) for _ in range(5)]
    mail = make_notification("EMAIL", uid=UID, inbox=True)
    plain_mail = make_notification("EMAIL", uid=UID)
    someone_else = make_notification("BROWSER", uid="43")
    other_tenant = make_notification("BROWSER", uid=UID, tenant="other")
    shard.enqueue([*sent, mail, plain_mail, someone_else, other_tenant], T0)
    shard.flush()
    newest_first = [mail.tag, *[n.tag for n in reversed(sent)]]
    first = feed(shard, limit=4)
    assert tags(first) == newest_first[:4] and first["unread"] == 6
    second = shard.feed(FeedQuery(TENANT, UID, limit=4, before=shard.feed(
        FeedQuery(TENANT, UID, limit=4), T0 + 5).next_before), T0 + 5).public()
    assert tags(second) == newest_first[4:] and second["next"] is None


def test_marked_read_by_tag_or_all_and_kept_across_restart_and_updates(storage: Storage) -> None:
    shard = make_shard(storage)
    sent = [make_notification("BROWSER", uid=UID) for _ in range(3)]
    shard.enqueue(sent, T0)
    shard.flush()
    answer = shard.mark_read(TENANT, UID, ReadMarks((sent[0].tag, "not-ours")), T0 + 1)
    assert (answer.read, answer.unread) == (1, 2)
    assert shard.mark_read(TENANT, UID, ReadMarks((sent[0].tag,)), T0 + 2).read == 0
    assert tags(feed(shard, unread_only=True)) == [sent[2].tag, sent[1].tag]
    # The shard's own later updates (sent, delivered) keep the read mark.
    leased = shard.lease(lane("BROWSER"), 10, T0 + 3, 30.0)
    shard.ack([Outcome(d.tag, "delivered", "websocket", lease=d.lease) for d in leased], T0 + 4)
    shard.flush()
    restarted = make_shard(storage, now=T0 + 5)
    page = feed(restarted)
    assert [i["read"] for i in page["items"]] == [False, False, True]  # type: ignore[index]
    assert {i["status"] for i in page["items"]} == {"delivered"}  # type: ignore[index]
    assert restarted.mark_read(TENANT, UID, ReadMarks(None), T0 + 6).read == 2
    assert feed(restarted)["unread"] == 0 and feed(restarted, unread_only=True)["items"] == []


def test_suppressed_cancelled_and_not_yet_due_are_not_listed(storage: Storage) -> None:
    shard = make_shard(storage)
    shard.recipients.put(TENANT, UID, parse_recipient({"preferences": {"CM": {"browser": False}}}),
                         T0)
    unwanted = make_notification("BROWSER", uid=UID)
    shard.enqueue([unwanted], T0)
    shard.recipients.forget(TENANT, UID, T0)
    cancelled = make_notification("BROWSER", uid=UID)
    later = make_notification("BROWSER", uid=UID, send_at=T0 + 3600)
    shown = make_notification("BROWSER", uid=UID)
    shard.enqueue([cancelled, later, shown], T0)
    shard.cancel(cancelled.tag, TENANT, T0 + 1)
    shard.flush()
    page = feed(shard)
    assert tags(page) == [shown.tag] and page["unread"] == 1
    assert shard.mark_read(TENANT, UID, ReadMarks(None), T0 + 5).read == 1
    due = shard.feed(FeedQuery(TENANT, UID), T0 + 3601).public()
    assert tags(due) == [shown.tag, later.tag] and due["unread"] == 1
