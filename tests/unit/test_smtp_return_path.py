"""HERALD_BOUNCE_DOMAIN: emails leave with the VERP return path of their tag as envelope sender,
seen by a real aiosmtpd server on loopback; the From header is left as it was."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.providers.registry import build_providers
from actors.providers.smtp_email import SmtpProvider
from capture.smtp_sink import RecordingHandler, SmtpSink
from herald.channels import Channel
from herald.config import Settings, load_settings
from herald.email_message import build_email
from herald.errors import ConfigError
from herald.render import Message
from herald.return_path import tag_from_address
from herald.sharding import make_tag
from tests.support.providers import deliver

DOMAIN = "bounces.example.org"
SENDER = "Herald <herald@example.org>"


def make_message(tag: str, **changes: Any) -> Message:
    message = Message(
        tag=tag, tenant="acme", type="CM_EMAIL", channel=Channel.EMAIL, uid="7", attempt=1,
        to="Bob <bob@example.com>", sender=None, subject="Hello", title=None, text="Hi Bob",
        html=None, media_url=None, bill_to=None, expires_at=4_102_444_800.0,
    )
    return dataclasses.replace(message, **changes)


class EnvelopeRecorder(RecordingHandler):
    """The sink's handler, also keeping each message's envelope (MAIL FROM, RCPT TO)."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink(EnvelopeRecorder()) as sink:
        yield sink


def test_with_a_bounce_domain_the_envelope_sender_is_the_tags_return_path() -> None:
    tag = make_tag(3)
    email = build_email(make_message(tag), SENDER, DOMAIN)
    assert email.sender == f"bounce+{tag}@{DOMAIN}"
    assert email.recipients == ("bob@example.com",)
    assert b"From: Herald <herald@example.org>\r\n" in email.data
    assert f"Message-ID: <{tag}@example.org>\r\n".encode() in email.data
    assert email == dataclasses.replace(build_email(make_message(tag), SENDER), sender=email.sender,
                                        data=email.data, data_7bit=email.data_7bit)


def test_without_a_bounce_domain_the_envelope_sender_is_the_from_address() -> None:
    assert build_email(make_message(make_tag(3)), SENDER).sender == "herald@example.org"


def test_a_tag_that_makes_no_return_path_keeps_the_from_address() -> None:
    assert build_email(make_message("tag-1"), SENDER, DOMAIN).sender == "herald@example.org"


async def test_the_smtp_server_sees_the_return_path_as_mail_from(sink: SmtpSink) -> None:
    settings = Settings(smtp_url=sink.url, smtp_from=SENDER, bounce_domain=DOMAIN)
    [provider] = build_providers(Channel.EMAIL, settings)
    assert isinstance(provider, SmtpProvider)
    tags = [make_tag(0), make_tag(1)]
    try:
        outcomes = await deliver(provider, [make_message(tag) for tag in tags])
    finally:
        await provider.close()
    assert [outcome.kind for outcome in outcomes] == ["sent", "sent"]
    handler = sink.handler
    assert isinstance(handler, EnvelopeRecorder)
    assert sorted(handler.envelopes) == sorted(
        (f"bounce+{tag}@{DOMAIN}", ["bob@example.com"]) for tag in tags)
    assert sorted(tag_from_address(sender, DOMAIN) or "" for sender, _ in handler.envelopes) == sorted(tags)
    assert {str(message["From"]) for message in handler.messages} == {SENDER}


async def test_without_the_setting_the_smtp_server_sees_the_from_address(sink: SmtpSink) -> None:
    [provider] = build_providers(Channel.EMAIL, Settings(smtp_url=sink.url, smtp_from=SENDER))
    try:
        [outcome] = await deliver(provider, [make_message(make_tag(0))])
    finally:
        await provider.close()
    assert outcome.kind == "sent"
    handler = sink.handler
    assert isinstance(handler, EnvelopeRecorder)
    assert handler.envelopes == [("herald@example.org", ["bob@example.com"])]


def test_settings_read_the_bounce_domain_and_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no herald.toml here
    defaults = load_settings(env={})
    assert (defaults.bounce_domain, defaults.bounce_port) == (None, 2525)
    settings = load_settings(env={"HERALD_BOUNCE_DOMAIN": DOMAIN, "HERALD_BOUNCE_PORT": "2526"})
    assert (settings.bounce_domain, settings.bounce_port) == (DOMAIN, 2526)
    with pytest.raises(ConfigError, match="HERALD_BOUNCE_DOMAIN: must be a domain name"):
        load_settings(env={"HERALD_BOUNCE_DOMAIN": "not a domain"})
    with pytest.raises(ConfigError, match="HERALD_BOUNCE_PORT: must be an integer from 1 to 65535"):
        load_settings(env={"HERALD_BOUNCE_PORT": "0"})
