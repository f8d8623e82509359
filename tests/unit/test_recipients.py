"""Recipients' settings (issue 20, 2): parsing a PUT body, quiet hours in the user's zone,
preferences by category and channel."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from herald.errors import ValidationError
from herald.recipients import ASAP_PRIORITY, QuietHours, Recipient, parse_recipient

BERLIN = {"timezone": "Europe/Berlin", "quiet_hours": {"start": "22:00", "end": "07:00"},
          "preferences": {"CM": {"email": False}, "NEWS": {"sms": False, "browser": True}}}


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_put_body_reads_into_settings_and_back() -> None:
    recipient = parse_recipient(BERLIN)
    assert recipient.timezone == "Europe/Berlin"
    assert recipient.quiet_hours == QuietHours(time(22), time(7))
    assert recipient.public() == BERLIN
    assert Recipient.from_json(recipient.to_json()) == recipient
    assert parse_recipient({}) == Recipient()


@pytest.mark.parametrize(("body", "field"), [
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
    ({"quiet_hours": {"start": "22:00"}}, "quiet_hours.end"),
    ({"preferences": {"CM": {"pigeon": False}}}, "preferences"),
    ({"preferences": {"CM": {"email": "no"}}}, "preferences.CM.email"),
    ({"colour": "blue"}, "colour"),
])
def test_a_bad_body_is_refused_naming_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_recipient(body)
    assert refused.value.field == field


def test_not_an_object_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_recipient(["timezone"])


def test_quiet_hours_across_midnight_end_in_the_users_morning() -> None:
    berlin = parse_recipient(BERLIN)
    # 23:30 in Berlin (CET, UTC+1) is 22:30 UTC: quiet until 07:00 Berlin = 06:00 UTC.
    assert berlin.quiet_until(at("2026-12-07T22:30:00+00:00"), 4) == at("2026-12-08T06:00:00+00:00")
    # 05:00 Berlin, the same night: until 07:00 that morning.
    assert berlin.quiet_until(at("2026-12-08T04:00:00+00:00"), 4) == at("2026-12-08T06:00:00+00:00")
    # 12:00 Berlin: not quiet.
    assert berlin.quiet_until(at("2026-12-08T11:00:00+00:00"), 4) is None
    # asap goes through.
    assert berlin.quiet_until(at("2026-12-07T22:30:00+00:00"), ASAP_PRIORITY) is None


def test_quiet_hours_within_a_day_and_in_summer_time() -> None:
    lunch = parse_recipient({"timezone": "Europe/Berlin",
                             "quiet_hours": {"start": "12:00", "end": "13:30"}})
    # 12:15 Berlin in July is 10:15 UTC (CEST, UTC+2): until 13:30 Berlin = 11:30 UTC.
    assert lunch.quiet_until(at("2026-07-01T10:15:00+00:00"), 4) == at("2026-07-01T11:30:00+00:00")
    assert lunch.quiet_until(at("2026-07-01T11:30:00+00:00"), 4) is None


def test_without_a_zone_quiet_hours_are_utc_and_an_empty_window_is_never_quiet() -> None:
    utc = Recipient(quiet_hours=QuietHours(time(0), time(6)))
    assert utc.quiet_until(datetime(2026, 1, 1, 3, tzinfo=UTC).timestamp(), 0) == \
        datetime(2026, 1, 1, 6, tzinfo=UTC).timestamp()
    never = Recipient(quiet_hours=QuietHours(time(6), time(6)))
    assert never.quiet_until(datetime(2026, 1, 1, 6, tzinfo=UTC).timestamp(), 0) is None


def test_preferences_are_on_unless_turned_off() -> None:
    recipient = parse_recipient(BERLIN)
    assert not recipient.allows("CM", "email")
    assert recipient.allows("CM", "sms") and recipient.allows("OTP", "email")
    assert recipient.allows("NEWS", "browser") and not recipient.allows("NEWS", "sms")
    unsubscribed = Recipient().with_preference("PROMO", "email", False)
    assert not unsubscribed.allows("PROMO", "email") and unsubscribed.allows("PROMO", "sms")
