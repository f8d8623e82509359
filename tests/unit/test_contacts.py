"""Unit tests for herald.contacts: possible phone numbers, email address syntax, SMS sender ids."""

from __future__ import annotations

import socket
from typing import Any

import dns.resolver
import pytest

from herald import contacts
from herald.contacts import E164_RE, email_address, phone_number, sms_sender
from herald.errors import ValidationError


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Syntax only: any DNS look-up (or other name resolution) fails the test."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("herald.contacts must not look anything up")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(dns.resolver.Resolver, "resolve", refuse)
    monkeypatch.setattr(dns.resolver, "resolve", refuse)


# -- phone numbers --------------------------------------------------------------------------
@pytest.mark.parametrize("number", [
    "+14155550100",
    "+15005550006",  # Twilio test numbers: possible, not assigned
    "+15005550007",
    "+15005550009",
    "+447911123456",
    "+4930123456",
])
def test_possible_numbers_are_accepted(number: str) -> None:
    assert phone_number(number, "details.to") == number


@pytest.mark.parametrize("number", [
    "+12",  # too short for anywhere
    "+999",  # no such country code
    "+1415555010",  # one digit short for NANP
    "+99912345678",  # no such country code
])
def test_impossible_numbers_are_refused(number: str) -> None:
    with pytest.raises(ValidationError, match="not a possible phone number") as caught:
        phone_number(number, "user.phone")
    assert caught.value.field == "user.phone"
    assert caught.value.message.startswith("user.phone: ")


@pytest.mark.parametrize("number", [
    "4155550100", "+0155550100", "+1 415 555 0100", "+1415555010012345", "+1415555O100",
    "+14155550100\n", "+14155550100\r", "\n+14155550100", "(415) 555-0100", "",
])
def test_only_the_e164_shape_is_accepted(number: str) -> None:
    with pytest.raises(ValidationError, match=r"E\.164") as caught:
        phone_number(number, "details.to")
    assert caught.value.field == "details.to"


def test_national_prefix_is_normalized_away() -> None:
    assert phone_number("+4407911123456", "details.to") == "+447911123456"


def test_the_shape_regex_accepts_any_e164_shaped_number() -> None:
    """The capture peers use only the shape: Twilio test numbers and unassigned ones pass."""
    for number in ("+15005550006", "+12", "+999", "+14155550100"):
        assert E164_RE.match(number)
    for number in ("+14155550100\n", "14155550100", "+1 415"):
        assert not E164_RE.match(number)


# -- email addresses ------------------------------------------------------------------------
@pytest.mark.parametrize("address", [
    "a..b.@x..y",
    "a@b",
    "a b@c.de",
    "x@y.com\r\nBcc: z@w.com",
    "x@y.com\n",
    '"Bob" <bob@x.com>',
    "Bob <bob@x.com>",
    "a@b@c",
    "nobody",
    "",
])
def test_bad_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValidationError) as caught:
        email_address(address, "user.email")
    assert caught.value.field == "user.email"
    assert caught.value.message.startswith("user.email: ")


@pytest.mark.parametrize("address", ["jürgen@bücher.de", "bob+tag@example.co.uk", "ann@example.org"])
def test_good_addresses_are_accepted(address: str) -> None:
    assert email_address(address, "details.to") == address


def test_the_domain_is_normalized() -> None:
    assert email_address("Bob@Example.COM", "details.to") == "Bob@example.com"


def test_the_library_reason_is_in_the_message() -> None:
    with pytest.raises(ValidationError, match=r"details.from: not an email address \(.*period"):
        email_address("a..b.@x..y", "details.from")


def test_deliverability_is_never_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = contacts.validate_email

    def spy(value: str, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(value, **kwargs)

    monkeypatch.setattr(contacts, "validate_email", spy)
    contacts._email.cache_clear()  # answers are cached per address
    email_address("bob@example.com", "details.to")
    assert seen["check_deliverability"] is False
    assert seen["allow_smtputf8"] is True
    assert seen["allow_display_name"] is False


# -- SMS sender ids -------------------------------------------------------------------------
@pytest.mark.parametrize("sender", ["Herald", "ACME 2", "12345", "+14155550111", "+15005550006"])
def test_sms_sender_is_a_possible_number_or_a_sender_id(sender: str) -> None:
    assert sms_sender(sender, "details.from") == sender


@pytest.mark.parametrize("sender", ["Herald Notifications Inc", "+12", "+999", "Herald!", "", "Herald\n"])
def test_bad_sms_senders_are_refused(sender: str) -> None:
    with pytest.raises(ValidationError) as caught:
        sms_sender(sender, "details.from")
    assert caught.value.field == "details.from"
