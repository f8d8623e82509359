"""What a recipient wants: their time zone, quiet hours and per-category channel preferences.

A tenant sets them with ``PUT /v1/users/{uid}``; the user's shard keeps them (``herald.
recipient_book``) and consults them when it accepts a notification for that user:

- a category turned off for the channel ends the notification at once, ``suppressed`` with the
  reason ``preference`` (unless the category is required: ``HERALD_REQUIRED_CATEGORIES``);
- a notification whose user is inside their quiet hours (local time, their time zone) waits
  until the quiet hours end, unless it is asap (priority ≥ ``ASAP_PRIORITY``).

The category is the part of ``type`` before the channel (``CM`` of ``CM_BROWSER``). Pure: the
clock is a parameter; time zones are the IANA database's (``zoneinfo``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from herald.channels import CLIENT_CHANNELS
from herald.errors import ValidationError

#: Priority from which quiet hours do not hold a notification back (``requester.asap`` gives 8).
ASAP_PRIORITY = 8
#: Categories a tenant may set preferences for, at most (each maps channels to on/off).
MAX_CATEGORIES = 200
_CHANNEL_KEYS = frozenset(channel.key for channel in CLIENT_CHANNELS)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in the recipient's local time; ``start`` after ``end`` spans midnight."""

    start: time
    end: time

    def until(self, local: datetime) -> datetime | None:
        """When the window that ``local`` falls in ends (in ``local``'s zone); None outside."""
        now = local.time().replace(tzinfo=None)
        if self.start == self.end:
            return None
        if self.start < self.end:
            inside = self.start <= now < self.end
            day = local.date()
        else:  # spans midnight: 22:00–07:00
            inside = now >= self.start or now < self.end
            day = local.date() + timedelta(days=1) if now >= self.start else local.date()
        if not inside:
            return None
        return datetime.combine(day, self.end, tzinfo=local.tzinfo)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One user's settings, as stored (``to_json``/``from_json``) and answered by the API."""

    timezone: str | None = None
    quiet_hours: QuietHours | None = None
    #: Category → channel key (``email``…) → on/off; what is not listed is on.
    preferences: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)

    def allows(self, category: str, channel_key: str) -> bool:
        return self.preferences.get(category, {}).get(channel_key, True)

    def quiet_until(self, now: float, priority: int) -> float | None:
        """Epoch seconds at which the quiet hours around ``now`` end, if a notification of
        ``priority`` must wait for it; None when it may go now."""
        if self.quiet_hours is None or priority >= ASAP_PRIORITY:
            return None
        local = datetime.fromtimestamp(now, ZoneInfo(self.timezone or "UTC"))
        end = self.quiet_hours.until(local)
        return None if end is None else end.timestamp()

    def with_preference(self, category: str, channel_key: str, on: bool) -> Recipient:
        """The same settings with one preference changed (an unsubscribe turns one off)."""
        preferences = {c: dict(chans) for c, chans in self.preferences.items()}
        preferences.setdefault(category, {})[channel_key] = on
        return Recipient(self.timezone, self.quiet_hours, preferences)

    def public(self) -> dict[str, Any]:
        quiet = self.quiet_hours
        return {
            "timezone": self.timezone,
            "quiet_hours": None if quiet is None else {"start": quiet.start.strftime("%H:%M"),
                                                       "end": quiet.end.strftime("%H:%M")},
            "preferences": {c: dict(chans) for c, chans in self.preferences.items()},
        }

    def to_json(self) -> str:
        return orjson.dumps(self.public()).decode()

    @classmethod
    def from_json(cls, text: str) -> Recipient:
        return parse_recipient(orjson.loads(text))


class QuietHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")


class RecipientIn(BaseModel):
    """The body of ``PUT /v1/users/{uid}``: every field optional, unknown ones refused."""

    model_config = ConfigDict(extra="forbid")
    timezone: str | None = Field(default=None, max_length=64)
    quiet_hours: QuietHoursIn | None = None
    preferences: dict[str, dict[str, StrictBool]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"not an IANA time zone: {value!r}") from None
        return value

    @field_validator("preferences")
    @classmethod
    def _known_channels(cls, value: dict[str, dict[str, bool]]) -> dict[str, dict[str, bool]]:
        if len(value) > MAX_CATEGORIES:
            raise ValueError(f"at most {MAX_CATEGORIES} categories")
        for category, channels in value.items():
            if not category or len(category) > 64:
                raise ValueError("a category is 1 to 64 characters")
            unknown = set(channels) - _CHANNEL_KEYS
            if unknown:
                raise ValueError(f"{category}: unknown channel {sorted(unknown)[0]!r} (one of "
                                 f"{', '.join(sorted(_CHANNEL_KEYS))})")
        return value


def parse_recipient(raw: Any) -> Recipient:
    """A ``PUT /v1/users/{uid}`` body as ``Recipient``; ``ValidationError`` naming the field."""
    if not isinstance(raw, dict):
        raise ValidationError("the body must be a JSON object", field=None)
    try:
        model = RecipientIn.model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ValidationError(f"{where}: {message}" if where else message, field=where) from None
    quiet = None
    if model.quiet_hours is not None:
        quiet = QuietHours(time.fromisoformat(model.quiet_hours.start),
                           time.fromisoformat(model.quiet_hours.end))
    return Recipient(model.timezone, quiet, model.preferences)
