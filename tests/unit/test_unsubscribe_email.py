"""Every email carries RFC 8058's List-Unsubscribe pair: rendered, written, and received by a real
SMTP server (the aiosmtpd sink of ``capture/smtp_sink.py``) on loopback."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from typing import Any

import pytest

from actors.providers.smtp_email import SmtpProvider
from capture.smtp_sink import SmtpSink
from herald.channels import Channel
from herald.config import SmtpTarget
from herald.delivery import Delivery
from herald.email_message import build_email
from herald.errors import PermanentProviderError
from herald.render import Message, render_message
from herald.unsubscribe_tokens import (
    UNSUBSCRIBE_PATH,
    Unsubscribe,
    UnsubscribeLinks,
    signing_key,
    verify_token,
)

SECRET = "unsub-secret-" + "s" * 20
PUBLIC = "https://herald.example.com"
LINKS = UnsubscribeLinks.of(SECRET, PUBLIC)
CREATED = 1_700_000_000.5


def delivery(tag: str = "t-1", channel: Channel = Channel.EMAIL, attempt: int = 1,
             **changes: Any) -> Delivery:
    kind = f"NEWS_LETTER_{channel.value}"
    made = Delivery(tag=tag, tenant="acme", type=kind, channel=channel, priority=4, uid="u-42",
                    recipient="bob@example.com" if channel is Channel.EMAIL else "+15005550006",
                    attempt=attempt, lease=1.0, created_at=CREATED, expires_at=CREATED + 3600,
                    payload={"type": kind, "user": {"uid": "u-42"},
                             "details": {"subject": "News", "content": "Hello"}})
    return dataclasses.replace(made, **changes)


def token_of(url: str) -> Unsubscribe:
    assert url.startswith(PUBLIC + UNSUBSCRIBE_PATH)
    return verify_token(signing_key(SECRET), url.removeprefix(PUBLIC + UNSUBSCRIBE_PATH))


def test_an_email_is_rendered_with_a_link_for_its_user_and_category() -> None:
    message = render_message(delivery(), LINKS)
    assert message.unsubscribe_url is not None
    assert token_of(message.unsubscribe_url) == Unsubscribe("acme", "u-42", "NEWS_LETTER",
                                                            1_700_000_000)
    # A retry carries the same link (the time it was accepted, not of the attempt).
    assert render_message(delivery(attempt=3), LINKS).unsubscribe_url == message.unsubscribe_url


def test_only_email_gets_a_link_and_only_with_links_configured() -> None:
    assert render_message(delivery(channel=Channel.SMS), LINKS).unsubscribe_url is None
    assert render_message(delivery()).unsubscribe_url is None


def head(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_both_headers_are_written_on_one_line_each() -> None:
    message = render_message(delivery(), LINKS)
    assert message.unsubscribe_url is not None
    built = build_email(message, "herald@example.org")
    lines = head(built.data)
    assert f"List-Unsubscribe: <{message.unsubscribe_url}>".encode() in lines
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    assert head(built.data_7bit) == lines
    parsed = BytesParser(policy=policy.default).parsebytes(built.data)
    assert parsed["List-Unsubscribe"] == f"<{message.unsubscribe_url}>"


def test_no_link_no_headers() -> None:
    built = build_email(render_message(delivery()), "herald@example.org")
    assert not any(line.startswith(b"List-Unsubscribe") for line in head(built.data))


@pytest.mark.parametrize("url", [
    "https://h.example/v1/unsubscribe/a>b", "https://h.example/v1/unsubscribe/a b",
    "https://h.example/v1/unsubscribe/a\r\nBcc: x@y", "https://hé.example/v1/unsubscribe/a",
    "mailto:x@y", "https://h.example/" + "a" * 980,
])
def test_an_unusable_link_is_refused_before_sending(url: str) -> None:
    message = dataclasses.replace(render_message(delivery(), LINKS), unsubscribe_url=url)
    with pytest.raises(PermanentProviderError, match="List-Unsubscribe"):
        build_email(message, "herald@example.org")


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


async def test_the_sink_receives_both_headers_and_a_token_that_verifies(sink: SmtpSink) -> None:
    provider = SmtpProvider(SmtpTarget("127.0.0.1", sink.port), "herald@example.org",
                            pool_size=1, timeout=10)
    message: Message = render_message(delivery("t-sink"), LINKS)
    try:
        assert (await provider.send(message)).kind == "sent"
    finally:
        await provider.close()
    received = sink.wait_for_tag("t-sink", timeout=10)
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = str(received["List-Unsubscribe"])
    assert link.startswith("<") and link.endswith(">")
    assert token_of(link[1:-1]) == Unsubscribe("acme", "u-42", "NEWS_LETTER", 1_700_000_000)
