"""The notification payload (as in DESIGN.md), validated at intake into a ``Notification``."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from herald.channels import Channel, parse_type
from herald.contacts import email_address, phone_number, sms_sender
from herald.errors import ValidationError
from herald.notification import Notification
from herald.priority import MAX_PRIORITY, MIN_PRIORITY, compute_priority
from herald.render import render_fields, template_context
from herald.sharding import make_tag, shard_for_uid

MAX_TTL_SECONDS = 30 * 86400
DEFAULT_TTL_SECONDS = 86400
#: The longest idempotency key (``user.mq-uuid-btag`` or the ``Idempotency-Key`` header).
MAX_IDEMPOTENCY_KEY = 200
#: ``details.send_at`` may be at most this far ahead.
MAX_SEND_AHEAD_SECONDS = 365 * 86400
#: The longest a notification can stay live: sent as late as it may be, then its longest TTL.
MAX_LIVE_SECONDS = MAX_SEND_AHEAD_SECONDS + MAX_TTL_SECONDS
_HEADER_FIELDS = ("to", "from", "subject", "reply_to", "title")
#: ``details.vars`` is copied into every render context and stored with the notification:
#: at most this many bytes as compact JSON…
MAX_VARS_BYTES = 64 * 1024
#: …and at most this many top-level keys.
MAX_VARS_KEYS = 1_000


class _Open(BaseModel):
    """Payload parts keep unknown keys: templates may reference them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Name(_Open):
    first: str | None = Field(default=None, max_length=200)
    middle: str | None = Field(default=None, max_length=200)
    last: str | None = Field(default=None, max_length=200)
    expr: str | None = Field(default=None, max_length=200)


class User(_Open):
    uid: int | str
    mq_uuid_btag: str | None = Field(default=None, alias="mq-uuid-btag", min_length=1,
                                     max_length=MAX_IDEMPOTENCY_KEY)
    name: Name | None = None
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    fax: str | None = Field(default=None, max_length=32)

    @field_validator("uid")
    @classmethod
    def _uid_not_empty(cls, value: int | str) -> int | str:
        if isinstance(value, str) and not (0 < len(value) <= 128):
            raise ValueError("uid must be 1 to 128 characters")
        return value


class Requester(_Open):
    type: str | None = Field(default=None, max_length=100)
    service: str | None = Field(default=None, max_length=100)
    asap: bool = False
    priority: int | None = Field(default=None, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    callback_url: pydantic.HttpUrl | None = None

    @field_validator("asap", mode="before")
    @classmethod
    def _yes_no(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("yes", "y", "true", "1"):
                return True
            if lowered in ("no", "n", "false", "0", ""):
                return False
            raise ValueError("asap must be yes or no")
        return value


class Details(_Open):
    title: str | None = Field(default=None, max_length=1000)
    content: str | None = Field(default=None, max_length=100_000)
    subject: str | None = Field(default=None, max_length=1000)
    html: str | None = Field(default=None, max_length=500_000)
    message: str | None = Field(default=None, max_length=100_000)
    to: str | None = Field(default=None, max_length=320)
    from_: str | None = Field(default=None, alias="from", max_length=320)
    reply_to: str | None = Field(default=None, max_length=320)
    bill_to: str | None = Field(default=None, max_length=200)
    media_url: pydantic.HttpUrl | None = None
    ttl: int | None = Field(default=None, gt=0, le=MAX_TTL_SECONDS)
    #: Send later: ISO 8601 with an offset, or epoch seconds (``send_at_epoch``).
    send_at: str | float | None = None
    #: Also list it in the user's inbox feed (``herald.inbox``; browser notifications always are).
    inbox: StrictBool | None = None
    vars: dict[str, Any] = Field(default_factory=dict)

    @field_validator("send_at", mode="before")
    @classmethod
    def _when(cls, value: Any) -> Any:
        if isinstance(value, bool):  # a JSON true is not a time
            raise ValueError("must be ISO 8601 with an offset or epoch seconds")
        return value


class NotificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(max_length=100)
    user: User
    requester: Requester = Field(default_factory=Requester)
    details: Details


def _pydantic_error(exc: pydantic.ValidationError) -> ValidationError:
    first = exc.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    if len(loc) > 1 and loc[-1] in ("int", "str"):  # the member of ``int | str`` (user.uid)
        loc.pop()
    field = ".".join(loc) or None
    return ValidationError(f"{field}: {first['msg']}" if field else first["msg"], field=field)


def _check_vars(variables: dict[str, Any]) -> None:
    """Cap ``details.vars`` (run after ``_check_storable``: it is known to encode)."""
    if len(variables) > MAX_VARS_KEYS:
        raise ValidationError(f"details.vars: at most {MAX_VARS_KEYS} keys", field="details.vars")
    if len(orjson.dumps(variables)) > MAX_VARS_BYTES:
        raise ValidationError(f"details.vars: at most {MAX_VARS_BYTES} bytes as JSON",
                              field="details.vars")


def _no_crlf(value: str | None, field: str) -> None:
    if value is not None and ("\r" in value or "\n" in value):
        raise ValidationError(f"{field}: must not contain CR or LF", field=field)


def _recipient(channel: Channel, details: dict[str, Any], user: dict[str, Any]) -> str | None:
    if channel is Channel.EMAIL:
        to = details.get("to") or user.get("email")
        field = "details.to" if details.get("to") else "user.email"
        if not to:
            raise ValidationError("details.to or user.email is required for EMAIL", "details.to")
        _no_crlf(to, field)
        return email_address(to, field)
    if channel in (Channel.SMS, Channel.FAX):
        fallback = "phone" if channel is Channel.SMS else "fax"
        to = details.get("to") or user.get(fallback) or user.get("phone")
        field = "details.to" if details.get("to") else f"user.{fallback}"
        if not to:
            raise ValidationError(f"details.to or user.{fallback} is required", "details.to")
        return phone_number(to, field)
    return None


def _check_storable(payload: dict[str, Any]) -> int:
    """Storage keeps payloads as JSON: refuse now what it could not write after a 202.

    Returns the encoded size, which the queue's byte limit counts.
    """
    size = 0
    for key, part in payload.items():
        try:
            size += len(orjson.dumps(part)) + len(key) + 4
        except orjson.JSONEncodeError as exc:  # 64-bit ints, lone surrogates, deep nesting
            raise ValidationError(f"{key}: cannot be stored as JSON ({exc})", field=key) from None
    return size


def _check_channel(channel: Channel, details: dict[str, Any]) -> None:
    sender = details.get("from")
    if channel is Channel.EMAIL:
        if not details.get("content") and not details.get("html"):
            raise ValidationError("details.content is required for EMAIL", "details.content")
        if sender is not None:
            email_address(sender, "details.from")
        if details.get("reply_to") is not None:
            email_address(details["reply_to"], "details.reply_to")
    elif channel is Channel.SMS:
        if not details.get("content"):
            raise ValidationError("details.content is required for SMS", "details.content")
        if sender is not None:
            sms_sender(sender, "details.from")
    elif channel is Channel.FAX:
        if not details.get("content") and not details.get("media_url"):
            raise ValidationError("details.content or details.media_url is required for FAX",
                                  "details.content")
        if sender is not None:
            phone_number(sender, "details.from")
    elif not details.get("content") and not details.get("title"):
        raise ValidationError("details.content or details.title is required", "details.content")


def validate_notification(raw: Any, tenant: str, now: float, shards: int = 1,
                          idempotency_header: str | None = None) -> Notification:
    """Validate one raw payload into the typed notification a shard accepts.

    ``idempotency_header``: an ``Idempotency-Key`` request header, the same as
    ``user.mq-uuid-btag`` (both given and different is a 422 naming the header).

    Raises ``ValidationError`` (with ``field``) for anything a client got wrong; never anything
    else for bad input.
    """
    if not isinstance(raw, dict):
        raise ValidationError("each notification must be a JSON object", field=None)
    try:
        model = NotificationIn.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise _pydantic_error(exc) from None
    category, channel = parse_type(model.type)
    try:
        payload = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    except ValueError as exc:  # pydantic's serializer refuses very deep nesting
        raise ValidationError(f"cannot be stored as JSON ({exc})", field=None) from None
    size = _check_storable(payload)
    details, user = payload["details"], payload["user"]
    for key in _HEADER_FIELDS:
        _no_crlf(details.get(key), f"details.{key}")
    _check_channel(channel, details)
    recipient = _recipient(channel, details, user)
    _check_vars(details.get("vars") or {})
    # What the channel actor will render, rendered now: sizes capped, the subject header checked.
    render_fields(channel, details, template_context(payload))
    idempotency_key = _idempotency_key(model.user.mq_uuid_btag, idempotency_header)
    ttl = model.details.ttl or DEFAULT_TTL_SECONDS
    send_at = send_at_epoch(model.details.send_at, now)
    shard = shard_for_uid(str(model.user.uid), shards)
    return Notification(
        tag=make_tag(shard), shard=shard, tenant=tenant, type=model.type, category=category,
        channel=channel, priority=compute_priority(model.requester.asap, model.requester.priority),
        uid=str(model.user.uid), idempotency_key=idempotency_key, recipient=recipient,
        created_at=now, expires_at=max(now, send_at) + ttl, payload=payload, size=size,
        not_before=send_at if send_at > now else 0.0,
    )


def _idempotency_key(btag: str | None, header: str | None) -> str | None:
    if header is None:
        return btag
    if not 0 < len(header) <= MAX_IDEMPOTENCY_KEY:
        raise ValidationError(f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} characters",
                              "Idempotency-Key")
    if btag is not None and btag != header:
        raise ValidationError("Idempotency-Key: differs from user.mq-uuid-btag (give one, or "
                              "the same in both)", "Idempotency-Key")
    return header


def send_at_epoch(value: str | float | None, now: float) -> float:
    """``details.send_at`` as epoch seconds (0.0 when not given; a time past means now).

    ISO 8601 is read by ``datetime.fromisoformat`` (3.11: any ISO 8601 date-time, ``Z`` too);
    a time without an offset is refused (whose midnight would it be?), as is one more than
    ``MAX_SEND_AHEAD_SECONDS`` ahead."""
    field = "details.send_at"
    if value is None:
        return 0.0
    if isinstance(value, str):
        text = value.strip()
        try:
            when = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise ValidationError(f"{field}: not an ISO 8601 date-time (e.g. "
                                      "2026-12-24T18:00:00+01:00) nor epoch seconds",
                                      field) from None
            if moment.utcoffset() is None:  # naive: whose midnight would it be?
                raise ValidationError(f"{field}: needs an offset (+01:00, Z): {text}",
                                      field) from None
            when = moment.timestamp()
    else:
        when = float(value)
    if not math.isfinite(when):
        raise ValidationError(f"{field}: not a time", field)
    if when > now + MAX_SEND_AHEAD_SECONDS:
        raise ValidationError(f"{field}: at most {MAX_SEND_AHEAD_SECONDS // 86400} days ahead",
                              field)
    return max(when, 0.0)
