"""A user's inbox feed: what it lists, one page of it, and marking items read (issue 20, 5).

The feed is the notifications a user can read again in the tenant's app: every browser
notification, and those of any channel sent with ``details.inbox: true`` — newest first, each
read or unread. A tenant's backend reads it with ``GET /v1/users/{uid}/notifications`` and the
user's page with its browser token (``GET /v1/browser/notifications``); both mark items read
with ``…/read``. What the user's preferences kept from them (``suppressed``) or what the sender
took back (``cancelled``) is not in it.

An item lives as long as its notification's record: the shard keeps whether a record is in the
feed (the ``inbox`` column, written with the record) and when it was read (``read_at``, which
only marking read writes), so the feed costs nothing for other notifications. Storage answers
pages (``herald.inbox_store``); this module is the values and the rules. Pure.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from herald.channels import Channel
from herald.errors import TemplateError, ValidationError
from herald.record import Record
from herald.render import render_fields, template_context
from herald.status import Status

__all__ = ["DEFAULT_LIMIT", "HIDDEN", "MAX_LIMIT", "MAX_READ_TAGS", "FeedItem", "FeedPage",
           "FeedQuery", "ReadAnswer", "ReadMarks", "feed_item", "feed_query", "in_inbox", "read_marks"]

#: Items on one page unless ``limit`` says otherwise, and at most.
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
#: Tags one ``…/read`` call may name.
MAX_READ_TAGS = 1000
#: Final states whose notifications leave the feed: the user did not want them, or the sender
#: took them back.
HIDDEN = frozenset({Status.SUPPRESSED, Status.CANCELLED})
#: SQL list of ``HIDDEN`` (what the stores' queries leave out).
HIDDEN_SQL = ", ".join(f"'{s.value}'" for s in sorted(HIDDEN))


def in_inbox(record: Record) -> bool:
    """Whether ``record`` is one of its user's feed items (decided once, when accepted)."""
    if record.channel is Channel.BROWSER:
        return True
    details = record.payload.get("details")
    return isinstance(details, dict) and details.get("inbox") is True


@dataclass(frozen=True, slots=True)
class FeedQuery:
    """One page of a user's feed: newest first, before ``before`` (a ``seq``; None: the newest)."""

    tenant: str
    uid: str
    unread_only: bool = False
    limit: int = DEFAULT_LIMIT
    before: int | None = None


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One entry of the feed as the API shows it."""

    tag: str
    type: str
    channel: str
    status: str
    priority: int
    title: str | None
    content: str | None
    created_at: float
    read_at: float | None

    def public(self) -> dict[str, Any]:
        return {"tag": self.tag, "type": self.type, "channel": self.channel,
                "status": self.status, "priority": self.priority, "title": self.title,
                "content": self.content, "created_at": self.created_at,
                "read": self.read_at is not None, "read_at": self.read_at}


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of the feed, the user's unread count, and where the next page starts (None: the
    last page)."""

    items: tuple[FeedItem, ...]
    unread: int
    next_before: int | None

    def public(self) -> dict[str, Any]:
        return {"items": [item.public() for item in self.items], "unread": self.unread,
                "next": None if self.next_before is None else _cursor(self.next_before)}


@dataclass(frozen=True, slots=True)
class ReadAnswer:
    """What marking read did: how many items became read, and how many are still unread."""

    read: int
    unread: int

    def public(self) -> dict[str, Any]:
        return {"read": self.read, "unread": self.unread}


@dataclass(frozen=True, slots=True)
class ReadMarks:
    """Which of a user's items to mark read: ``tags``, or every one (``tags`` None)."""

    tags: tuple[str, ...] | None


def feed_item(record: Record, read_at: float | None) -> FeedItem:
    """The feed's view of ``record``: its title and text as the user sees them."""
    title = content = None
    try:
        fields = render_fields(record.channel, record.payload.get("details") or {},
                               template_context(record.payload))
        title, content = fields.title or fields.subject, fields.text
    except TemplateError:  # it failed to render when sent, too: the feed shows what it can
        details = record.payload.get("details") or {}
        title, content = details.get("title") or details.get("subject"), details.get("content")
    return FeedItem(record.tag, record.type, record.channel.value, record.status.value,
                    record.priority, title, content, record.created_at, read_at)


def _cursor(seq: int) -> str:
    """Opaque to clients: where a page ends, so the next one starts after it."""
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def _before(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text[:1] != "s" or not text[1:].isdigit():
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor: the `next` of a previous page", "cursor") from None


def feed_query(tenant: str, uid: str, params: Mapping[str, str]) -> FeedQuery:
    """A page request from query parameters ``unread``, ``limit`` and ``cursor``; a 422 naming
    the one that is wrong."""
    unread = params.get("unread", "false").lower()
    if unread not in ("true", "false", "1", "0"):
        raise ValidationError("unread: true or false", "unread")
    raw_limit = params.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ValidationError(f"limit: a whole number from 1 to {MAX_LIMIT}", "limit")
    cursor = params.get("cursor")
    return FeedQuery(tenant, uid, unread in ("true", "1"), int(raw_limit),
                     _before(cursor) if cursor else None)


def read_marks(body: Any) -> ReadMarks:
    """``{"tags": [...]}`` or ``{"all": true}``; a 422 naming the field otherwise."""
    if not isinstance(body, dict) or ("tags" in body) == ("all" in body) \
            or set(body) - {"tags", "all"}:
        raise ValidationError('body: {"tags": [...]} or {"all": true}', "tags")
    if "all" in body:
        if body["all"] is not True:
            raise ValidationError("all: true (or name the tags)", "all")
        return ReadMarks(None)
    tags = body["tags"]
    if not isinstance(tags, list) or not 0 < len(tags) <= MAX_READ_TAGS \
            or not all(isinstance(t, str) and 0 < len(t) <= 64 for t in tags):
        raise ValidationError(f"tags: 1 to {MAX_READ_TAGS} notification tags", "tags")
    return ReadMarks(tuple(dict.fromkeys(tags)))
