"""Searching notifications of every tenant: the admin console's filters, order and cursor.

A ``SearchQuery`` is parsed once from the admin API's query string (``parse_query``); each shard
answers its newest matches (``Storage.search``: SQL over its SQLite file or PostgreSQL, each in
its ``SQLDialect``, or ``matches`` over memory; all read the same ``SearchQuery`` so they cannot
disagree), and intake merges the
shards' pages (``merge_pages``).

Order is newest first: ``created_at`` descending, then ``tag`` descending, so the order is total
and a page boundary (a ``Position``) is exact even when two notifications share a timestamp.
The cursor is that boundary as base64url JSON: opaque to callers, and stateless, so any intake
replica continues any page.

What a shard examines for one page is bounded: it walks its records newest first (an index on
``created_at, tag``; ``since``/``until`` and the cursor narrow the walk) and looks at most at
``budget`` of them (``HERALD_ADMIN_SEARCH_SCAN``). One that stopped on its budget says where
(``Scanned.scanned_to``); the merged page then holds only what is known complete, maybe fewer
than ``limit`` items, and its cursor continues from there.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from herald.channels import Channel
from herald.errors import ValidationError
from herald.record import Record
from herald.status import Status

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "POSTGRES", "SCAN_ROWS", "SQLITE", "Position", "SQLDialect",
           "Scanned", "SearchPage", "SearchQuery", "merge_pages", "parse_query", "parse_time",
           "scan_newest"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: Rows one shard examines for one page at most (``HERALD_ADMIN_SEARCH_SCAN``'s default): a
#: search that finds too little in them answers what it found and a cursor to go on from there.
SCAN_ROWS = 20_000
#: Longer than any cursor we make: refused before it is decoded.
MAX_CURSOR_LENGTH = 1024
#: Query parameters the search understands (anything else is a 422, not silently ignored).
PARAMETERS = frozenset({"status", "channel", "tenant", "uid", "type", "service", "since", "until",
                        "limit", "cursor"})


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a page ended: the last item's (``created_at``, ``tag``); the next page is older."""

    created_at: float
    tag: str

    def encode(self) -> str:
        raw = orjson.dumps([self.created_at, self.tag])
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, cursor: str) -> Position:
        """The position in ``cursor``; ``ValidationError`` (field ``cursor``) if it is not one."""
        try:
            if len(cursor) > MAX_CURSOR_LENGTH:
                raise ValueError("too long")
            data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            created_at, tag = data
            if isinstance(created_at, bool) or not isinstance(created_at, int | float) \
                    or not isinstance(tag, str) or not math.isfinite(created_at):
                raise ValueError("not a position")
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise ValidationError("cursor: not a cursor this API returned", "cursor") from None
        return cls(float(created_at), tag)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Filters (all optional, combined with AND), a page size and where the page starts.

    ``statuses`` and ``channels`` match any of theirs; ``since``/``until`` bound ``created_at``
    (both included); ``service`` is the payload's ``requester.service``.
    """

    statuses: tuple[Status, ...] = ()
    channels: tuple[Channel, ...] = ()
    tenant: str | None = None
    uid: str | None = None
    type: str | None = None
    service: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = DEFAULT_LIMIT
    #: The page holds only notifications older than this (the cursor).
    after: Position | None = None

    def with_limit(self, limit: int) -> SearchQuery:
        return replace(self, limit=limit)

    def matches(self, record: Record) -> bool:
        """Whether ``record`` is in the result (what ``where`` says in SQL)."""
        if self.statuses and record.status not in self.statuses:
            return False
        if self.channels and record.channel not in self.channels:
            return False
        if self.tenant is not None and record.tenant != self.tenant:
            return False
        if self.uid is not None and record.uid != self.uid:
            return False
        if self.type is not None and record.type != self.type:
            return False
        if self.service is not None and service_of(record.payload) != self.service:
            return False
        if self.since is not None and record.created_at < self.since:
            return False
        if self.until is not None and record.created_at > self.until:
            return False
        return self.after is None or Position(record.created_at, record.tag) < self.after

    def in_range(self, record: Record) -> bool:
        """Whether ``record`` is in the walk (``since``, ``until``, the cursor): what
        ``range_where`` says in SQL."""
        if self.since is not None and record.created_at < self.since:
            return False
        if self.until is not None and record.created_at > self.until:
            return False
        return self.after is None or Position(record.created_at, record.tag) < self.after

    def range_where(self, dialect: SQLDialect | None = None) -> tuple[str, list[Any]]:
        """The walk's bounds as an SQL ``WHERE`` clause (the ``created_at, tag`` index's range)."""
        return self._where(dialect or SQLITE, filters=False)

    def where(self, dialect: SQLDialect | None = None) -> tuple[str, list[Any]]:
        """The same filters as an SQL ``WHERE`` clause over the ``notifications`` table."""
        return self._where(dialect or SQLITE, filters=True)

    def filter_where(self, dialect: SQLDialect | None = None) -> tuple[str, list[Any]]:
        """The filters that are not bounds (status, channel, tenant…) as an SQL clause."""
        return self._where(dialect or SQLITE, filters=True, bounds=False)

    def _where(self, dialect: SQLDialect, filters: bool, bounds: bool = True
               ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if filters:
            self._filter_clauses(dialect, clauses, params)
        if bounds:
            self._bound_clauses(dialect.mark, clauses, params)
        return (" AND ".join(clauses) or dialect.true), params

    def _filter_clauses(self, dialect: SQLDialect, clauses: list[str], params: list[Any]) -> None:
        mark = dialect.mark
        if self.statuses:
            clauses.append(f"status IN ({', '.join(mark for _ in self.statuses)})")
            params += [s.value for s in self.statuses]
        if self.channels:
            clauses.append(f"channel IN ({', '.join(mark for _ in self.channels)})")
            params += [c.value for c in self.channels]
        for column in ("tenant", "uid", "type"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = {mark}")
                params.append(value)
        if self.service is not None:
            clauses.append(f"{dialect.service} = {mark}")
            params.append(self.service)

    def _bound_clauses(self, mark: str, clauses: list[str], params: list[Any]) -> None:
        if self.since is not None:
            clauses.append(f"created_at >= {mark}")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"created_at <= {mark}")
            params.append(self.until)
        if self.after is not None:
            clauses.append(f"(created_at < {mark} OR (created_at = {mark} AND tag < {mark}))")
            params += [self.after.created_at, self.after.created_at, self.after.tag]


@dataclass(frozen=True, slots=True)
class SQLDialect:
    """How one database spells what a search's ``WHERE`` clause needs."""

    #: A query parameter.
    mark: str
    #: A clause that always holds (a search with no filter).
    true: str
    #: The payload's ``requester.service`` as text (the payload is stored as JSON bytes).
    service: str


SQLITE = SQLDialect("?", "1", "json_extract(CAST(payload AS TEXT), '$.requester.service')")
#: ``json``, not ``jsonb``: it parses only for this one look-up, and takes any JSON text.
POSTGRES = SQLDialect("%s", "TRUE",
                      "(convert_from(payload, 'UTF8')::json #>> '{requester,service}')")


@dataclass(frozen=True, slots=True)
class Scanned:
    """A shard's matches for one page, newest first, and where its walk stopped on its budget
    (None: it saw every record in range, or filled the page)."""

    records: list[Record]
    scanned_to: Position | None = None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A shard's answer to an admin search (``QueueActor.admin_search``): rows and ``scanned_to``."""

    items: Sequence[Mapping[str, Any]]
    scanned_to: Position | None = None


def scan_newest(records: Iterable[Record], query: SearchQuery, budget: int | None) -> Scanned:
    """``Scanned`` over records in memory: the same walk and budget as the SQL one."""
    walk = newest_first(filter(query.in_range, records), None)
    window = walk if budget is None else walk[:budget]
    found = [r for r in window if query.matches(r)][:query.limit]
    stopped = budget is not None and len(walk) > budget and len(found) < query.limit
    return Scanned(found, Position(window[-1].created_at, window[-1].tag) if stopped else None)


def service_of(payload: Mapping[str, Any]) -> str | None:
    """The requester service a payload names (``requester.service``), if any."""
    requester = payload.get("requester")
    service = requester.get("service") if isinstance(requester, Mapping) else None
    return service if isinstance(service, str) else None


def newest_first(records: Iterable[Record], limit: int | None) -> list[Record]:
    """The first ``limit`` of ``records`` (all: None) in search order (for backends in memory)."""
    return sorted(records, key=lambda r: (r.created_at, r.tag), reverse=True)[:limit]


def parse_time(text: str, field: str) -> float:
    """Epoch seconds, or an ISO 8601 time (UTC unless it names its offset) → epoch seconds."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{field}: epoch seconds or an ISO 8601 time, e.g. "
                                  "2026-03-01T12:00:00Z", field) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if not math.isfinite(value):
        raise ValidationError(f"{field}: must be a finite number of seconds", field)
    return value


def _choices(text: str, field: str, parse: Any, names: Sequence[str]) -> tuple[Any, ...]:
    chosen = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            chosen.append(parse(part))
        except ValueError:
            raise ValidationError(f"{field}: {part!r} is not one of {', '.join(names)}",
                                  field) from None
    return tuple(dict.fromkeys(chosen))


def parse_query(params: Mapping[str, str]) -> SearchQuery:
    """The query string of ``GET /v1/admin/notifications`` → a ``SearchQuery``.

    Empty values mean "no filter" (a form submits every field). ``status`` and ``channel`` take
    a comma-separated list. A bad value is a ``ValidationError`` naming its parameter.
    """
    unknown = sorted(set(params) - PARAMETERS)
    if unknown:
        raise ValidationError(f"{unknown[0]}: unknown parameter (one of "
                              f"{', '.join(sorted(PARAMETERS))})", unknown[0])
    given = {name: value.strip() for name, value in params.items() if value.strip()}
    statuses = _choices(given.get("status", ""), "status", lambda s: Status(s.lower()),
                        [s.value for s in Status])
    channels = _choices(given.get("channel", ""), "channel", Channel.from_key,
                        [c.key for c in Channel])
    limit = DEFAULT_LIMIT
    if "limit" in given:
        try:
            limit = int(given["limit"])
        except ValueError:
            raise ValidationError("limit: must be an integer", "limit") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationError(f"limit: must be 1 to {MAX_LIMIT}", "limit")
    for name in ("tenant", "uid", "type", "service"):
        if len(given.get(name, "")) > 200:
            raise ValidationError(f"{name}: at most 200 characters", name)
    since = parse_time(given["since"], "since") if "since" in given else None
    until = parse_time(given["until"], "until") if "until" in given else None
    if since is not None and until is not None and since > until:
        raise ValidationError("since: is after until", "since")
    return SearchQuery(
        statuses=statuses, channels=channels, tenant=given.get("tenant"), uid=given.get("uid"),
        type=given["type"].upper() if "type" in given else None, service=given.get("service"),
        since=since, until=until, limit=limit,
        after=Position.decode(given["cursor"]) if "cursor" in given else None,
    )


def merge_pages(pages: Iterable[SearchPage | Sequence[Mapping[str, Any]]],
                limit: int) -> tuple[list[Mapping[str, Any]], str | None]:
    """Merge the shards' pages (each newest first, up to ``limit + 1`` items) into one page of
    ``limit`` and the cursor of the next page (None when there is no more).

    A shard that had more than ``limit`` matches returned ``limit + 1``, so "more than
    ``limit`` in all" is exactly "there is a next page". A shard that stopped on its scan
    budget is complete only down to where it stopped: the page keeps what is newer than the
    newest such stop (maybe fewer than ``limit`` items, maybe none) and continues from there.
    """
    answers = [page if isinstance(page, SearchPage) else SearchPage(list(page)) for page in pages]
    stops = [page.scanned_to for page in answers if page.scanned_to is not None]
    stop = max(stops) if stops else None

    def position(item: Mapping[str, Any]) -> Position:
        return Position(float(item["created_at"]), str(item["tag"]))

    items: list[Mapping[str, Any]] = sorted(
        (item for page in answers for item in page.items
         if stop is None or position(item) >= stop), key=position, reverse=True)
    if len(items) > limit:
        return items[:limit], position(items[limit - 1]).encode()
    return items, stop.encode() if stop is not None else None
