"""The admin console's core on a shard, over every storage backend: search and its cursor, the
operator's retry and cancel across tenants, paused channels (kept across a restart), figures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from herald.channels import Channel
from herald.errors import Conflict, NotFound, ValidationError
from herald.memory_storage import MemoryStorage
from herald.notification import Notification
from herald.outcome import Outcome, OutcomeKind
from herald.queue import QueueShard
from herald.retry import RetryPolicy
from herald.search import Position, SearchPage, SearchQuery, merge_pages, parse_query
from herald.status import Status
from herald.storage import SQLiteStorage, Storage
from tests.unit.conftest import T0, lane, make_notification, make_shard

LEASE = 30.0


def put(shard: QueueShard, *notifications: Notification) -> None:
    shard.enqueue(list(notifications), T0)
    shard.flush()


def take(shard: QueueShard, channel: str, now: float = T0) -> list[str]:
    leased = shard.lease(lane(channel), 100, now, LEASE)
    shard.flush()
    return [d.tag for d in leased]


def ack(shard: QueueShard, tag: str, kind: OutcomeKind, now: float = T0) -> None:
    shard.ack([Outcome(tag, kind, "capture")], now)
    shard.flush()


def search(shard: QueueShard, **params: str) -> list[str]:
    return [r.tag for r in shard.search(parse_query(params))]


@pytest.fixture
def population(storage: Storage) -> tuple[QueueShard, dict[str, Notification]]:
    """Six notifications of two tenants, channels and services, one second apart."""
    shard = make_shard(storage)
    made = {
        "a_email": make_notification("EMAIL", tenant="acme", now=T0 + 1, uid="u1"),
        "a_sms": make_notification("SMS", tenant="acme", now=T0 + 2, uid="u2"),
        "b_email": make_notification("EMAIL", tenant="beta", now=T0 + 3, uid="u1"),
        "b_browser": make_notification("BROWSER", tenant="beta", now=T0 + 4, uid="u3"),
        "a_fax": make_notification("FAX", tenant="acme", now=T0 + 5, uid="u1"),
        "b_sms": make_notification("SMS", tenant="beta", now=T0 + 6, uid="u2"),
    }
    put(shard, *made.values())
    return shard, made


def names(made: Mapping[str, Notification], tags: list[str]) -> list[str]:
    by_tag = {n.tag: name for name, n in made.items()}
    return [by_tag[t] for t in tags]


# -- search --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("params", "expected"), [
    ({}, ["b_sms", "a_fax", "b_browser", "b_email", "a_sms", "a_email"]),
    ({"tenant": "acme"}, ["a_fax", "a_sms", "a_email"]),
    ({"channel": "email"}, ["b_email", "a_email"]),
    ({"channel": "sms,fax"}, ["b_sms", "a_fax", "a_sms"]),
    ({"uid": "u1", "tenant": "beta"}, ["b_email"]),
    ({"type": "cm_sms"}, ["b_sms", "a_sms"]),
    ({"service": "CM_DA_MESSAGE_SERVICE", "channel": "browser"}, ["b_browser"]),
    ({"service": "NOPE"}, []),
    ({"since": str(T0 + 2), "until": str(T0 + 4)}, ["b_browser", "b_email", "a_sms"]),
    ({"status": "queued", "limit": "2"}, ["b_sms", "a_fax"]),
])
def test_search_filters_newest_first_on_every_backend(
    population: tuple[QueueShard, dict[str, Notification]], params: dict[str, str],
    expected: list[str],
) -> None:
    shard, made = population
    assert names(made, search(shard, **params)) == expected


def test_search_sees_status_changes_and_every_state(
    population: tuple[QueueShard, dict[str, Notification]],
) -> None:
    shard, made = population
    (tag,) = take(shard, "FAX")
    ack(shard, tag, "sent")
    assert names(made, search(shard, status="sent")) == ["a_fax"]
    assert names(made, search(shard, status="sent,queued", tenant="acme")) == ["a_fax", "a_sms", "a_email"]


def test_a_cursor_pages_through_two_shards_once_each(storage: Storage) -> None:
    """Pages of two shards merged, page after page: every notification once, newest first."""
    shards = [make_shard(storage), make_shard(MemoryStorage())]
    made = [make_notification("EMAIL", now=T0 + i) for i in range(11)]
    for i, notification in enumerate(made):
        put(shards[i % 3 == 0], notification)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = parse_query({"limit": "4", **({"cursor": cursor} if cursor else {})})
        pages = [[{"tag": r.tag, "created_at": r.created_at}
                  for r in s.search(query.with_limit(query.limit + 1))] for s in shards]
        items, cursor = merge_pages(pages, query.limit)
        seen += [str(item["tag"]) for item in items]
        if cursor is None:
            break
    assert seen == [n.tag for n in reversed(made)]


def test_a_scan_budget_bounds_each_page_and_the_cursor_goes_on_from_where_it_stopped(
        storage: Storage, tmp_path: Path) -> None:
    """Sparse matches over two shards, each looking at 3 records per page at most: pages may be
    short (or empty) but carry a cursor, and every match comes once, newest first."""
    shards = [make_shard(storage), make_shard(SQLiteStorage(tmp_path / "other.db", "OFF"))]
    made = [make_notification("SMS" if i % 5 == 0 else "EMAIL", now=T0 + i) for i in range(40)]
    for i, notification in enumerate(made):
        put(shards[i % 2], notification)
    wanted = [n.tag for n in reversed(made) if n.channel is Channel.SMS]
    seen: list[str] = []
    cursor: str | None = None
    short_pages = 0
    for _ in range(100):
        query = parse_query({"channel": "sms", "limit": "4", **({"cursor": cursor} if cursor else {})})
        pages = []
        for shard in shards:
            found = shard.scan(query.with_limit(query.limit + 1), 3)
            assert len(found.records) <= 3
            pages.append(SearchPage([{"tag": r.tag, "created_at": r.created_at}
                                     for r in found.records], found.scanned_to))
        items, cursor = merge_pages(pages, query.limit)
        short_pages += len(items) < query.limit and cursor is not None
        seen += [str(item["tag"]) for item in items]
        if cursor is None:
            break
    assert seen == wanted
    assert short_pages  # the budget did stop a walk before its page filled


def test_ties_in_time_are_ordered_by_tag_and_paged_exactly(storage: Storage) -> None:
    shard = make_shard(storage)
    same = [make_notification("EMAIL", now=T0) for _ in range(5)]
    put(shard, *same)
    first = shard.search(SearchQuery(limit=2))
    rest = shard.search(SearchQuery(limit=10, after=Position(first[-1].created_at, first[-1].tag)))
    tags = [r.tag for r in first + rest]
    assert tags == sorted((n.tag for n in same), reverse=True)


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "lost"}, "status"), ({"channel": "pigeon"}, "channel"), ({"limit": "0"}, "limit"),
    ({"limit": "x"}, "limit"), ({"since": "yesterday"}, "since"), ({"cursor": "!!"}, "cursor"),
    ({"since": "10", "until": "5"}, "since"), ({"colour": "red"}, "colour"),
])
def test_bad_search_parameters_name_themselves(params: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_query(params)
    assert caught.value.field == field


def test_times_may_be_iso_and_empty_fields_are_no_filter() -> None:
    query = parse_query({"since": "2026-03-01T00:00:00Z", "until": "2026-03-01T01:00:00+01:00",
                         "tenant": "", "status": ""})
    assert query.since == query.until == 1772323200.0
    assert query.tenant is None and query.statuses == ()
    assert Position.decode(Position(1.5, "t").encode()) == Position(1.5, "t")


# -- the operator's actions ----------------------------------------------------------------------
def dead_letter(storage: Storage, tenant: str = "beta") -> tuple[QueueShard, str]:
    shard = make_shard(storage, policies={"EMAIL": RetryPolicy(max_attempts=1)})
    notification = make_notification("EMAIL", tenant=tenant)
    put(shard, notification)
    take(shard, "EMAIL")
    ack(shard, notification.tag, "retry")
    assert shard.find(notification.tag).status is Status.DEAD
    return shard, notification.tag


def test_an_operator_retries_a_dead_letter_of_any_tenant(storage: Storage) -> None:
    shard, tag = dead_letter(storage)
    record = shard.revive_any(tag, T0 + 1)
    shard.flush()
    assert record.status is Status.QUEUED and record.attempts == 0
    assert take(shard, "EMAIL", T0 + 2) == [tag]
    ack(shard, tag, "sent", T0 + 2)
    assert [h.outcome for h in shard.find(tag).history] == ["retry", "revived", "sent"]
    with pytest.raises(Conflict):
        shard.revive_any(tag, T0 + 3)  # sent: nothing to retry


def test_an_operator_retries_a_failed_one_but_not_an_expired_one(storage: Storage) -> None:
    shard = make_shard(storage)
    refused, short = make_notification("SMS"), make_notification("SMS", ttl=5)
    put(shard, refused)
    take(shard, "SMS")
    ack(shard, refused.tag, "failed")
    assert shard.revive_any(refused.tag, T0 + 1).status is Status.QUEUED
    put(shard, short)
    shard.lease(lane("SMS"), 10, T0 + 10, LEASE)  # its ttl ran out while it waited: failed
    shard.flush()
    assert shard.find(short.tag).status is Status.FAILED
    with pytest.raises(Conflict, match="expired"):
        shard.revive_any(short.tag, T0 + 11)


def test_an_operator_cancels_any_tenants_queued_one(storage: Storage) -> None:
    shard = make_shard(storage)
    notification = make_notification("EMAIL", tenant="someone")
    put(shard, notification)
    assert shard.cancel_any(notification.tag, T0).status is Status.CANCELLED
    shard.flush()
    with pytest.raises(Conflict):
        shard.cancel_any(notification.tag, T0)
    with pytest.raises(NotFound):
        shard.cancel_any("00000000-0000-0000-0000-000000000000", T0)
    assert take(shard, "EMAIL") == []


# -- paused channels -----------------------------------------------------------------------------
def test_a_paused_channel_leases_nothing_and_resumes_in_order(storage: Storage) -> None:
    shard = make_shard(storage)
    shard.pause(Channel.EMAIL, T0)
    first, second = make_notification("EMAIL", now=T0), make_notification("EMAIL", now=T0 + 1)
    sms = make_notification("SMS")
    put(shard, first, second, sms)
    assert take(shard, "EMAIL") == []
    assert take(shard, "SMS") == [sms.tag]  # other channels go on
    assert shard.find(first.tag).status is Status.QUEUED
    assert shard.pauses.since() == {"email": T0}
    shard.resume(Channel.EMAIL)
    assert take(shard, "EMAIL") == [first.tag, second.tag]


def test_a_pause_survives_a_restart(storage: Storage) -> None:
    shard = make_shard(storage)
    shard.pause(Channel.SMS, T0)
    shard.pause(Channel.BROWSER, T0 + 1)
    put(shard, waiting := make_notification("SMS"))
    restarted = make_shard(storage)  # a new shard over the same storage: what a restart does
    assert Channel.SMS in restarted.pauses and Channel.BROWSER in restarted.pauses
    assert take(restarted, "SMS") == []
    restarted.resume(Channel.SMS)
    assert Channel.SMS not in make_shard(storage).pauses
    assert take(restarted, "SMS") == [waiting.tag]


# -- figures -------------------------------------------------------------------------------------
def test_figures_for_the_overview(storage: Storage) -> None:
    shard, tag = dead_letter(storage)
    old, new = make_notification("EMAIL", now=T0 - 50), make_notification("SMS", now=T0 - 10)
    put(shard, old, new)
    assert shard.dead_letters() == 1
    assert shard.oldest_waiting() == {"email": T0 - 50, "sms": T0 - 10}
    shard.revive_any(tag, T0)
    shard.flush()
    assert shard.dead_letters() == 0


def test_a_search_that_runs_too_long_is_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shard has other work: a search over its budget is a 422, and the next one runs."""
    from herald import admin_queries

    shard = make_shard(SQLiteStorage(tmp_path / "shard.db", synchronous="OFF"))
    put(shard, *(make_notification("EMAIL", now=T0 + i) for i in range(300)))
    monkeypatch.setattr(admin_queries, "SEARCH_SECONDS", -1.0)
    monkeypatch.setattr(admin_queries, "PROGRESS_STEPS", 100)
    with pytest.raises(ValidationError, match="narrow it"):
        search(shard, service="NOPE")
    monkeypatch.setattr(admin_queries, "SEARCH_SECONDS", 2.0)
    assert search(shard, service="NOPE") == []
