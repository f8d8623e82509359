"""The bounce listener as a mail system meets it: smtplib on loopback sends it DSNs and ARF
reports, and the reports come out typed. No Ray: the listener runs on the test's own loop."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from actors.bounce_listener import BounceListener
from herald.bounce_reports import BounceKind, BounceReport
from herald.sharding import make_tag
from tests.support.bounce_samples import DOMAIN, TAG, sample

HOST = "127.0.0.1"
LIMIT = 64 * 1024
T = TypeVar("T")


@dataclass
class Reports:
    """``on_report``: records each report; fails the next ``failures`` calls."""

    received: list[BounceReport] = field(default_factory=list)
    failures: int = 0

    async def __call__(self, report: BounceReport) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError(f"shard away (while recording {report.recipient})")
        self.received.append(report)


@pytest.fixture
def reports() -> Reports:
    return Reports()


@pytest.fixture
async def listener(reports: Reports) -> AsyncIterator[BounceListener]:
    listener = BounceListener(HOST, 0, DOMAIN, reports, max_message_bytes=LIMIT)
    await listener.start()
    yield listener
    await listener.close()


def _session(port: int, work: Callable[[smtplib.SMTP], T]) -> T:
    with smtplib.SMTP(HOST, port, timeout=10) as client:
        return work(client)


async def in_session(listener: BounceListener, work: Callable[[smtplib.SMTP], T]) -> T:
    """Run ``work`` on a fresh SMTP client in a thread (the listener serves on this loop)."""
    return await asyncio.to_thread(_session, listener.port, work)


async def send(listener: BounceListener, message: bytes, to: str) -> dict[str, tuple[int, bytes]]:
    """Send as a mail system sends a bounce: from the null sender ``<>``."""
    return await in_session(listener, lambda client: client.sendmail("", [to], message))


async def test_a_dsn_sent_to_a_return_path_gives_a_hard_bounce(
    listener: BounceListener, reports: Reports
) -> None:
    assert listener.port != 0
    refused = await send(listener, sample("postfix_user_unknown"), f"bounce+{TAG}@{DOMAIN}")
    assert refused == {}
    assert reports.received == [BounceReport(
        BounceKind.HARD, TAG, "bob@example.com", "5.1.1",
        "smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: "
        "User unknown in local recipient table")]


async def test_an_arf_report_gives_a_complaint(listener: BounceListener, reports: Reports) -> None:
    await send(listener, sample("arf_abuse"), f"bounce+{TAG}@{DOMAIN.upper()}")
    assert reports.received == [BounceReport(BounceKind.COMPLAINT, TAG, "erin@example.com", None,
                                             "abuse")]


async def test_the_return_path_names_the_tag_and_soft_bounces_come_through(
    listener: BounceListener, reports: Reports
) -> None:
    other = make_tag(1)
    await send(listener, sample("gmail_no_such_user"), f"bounce+{other}@{DOMAIN}")
    await send(listener, sample("delayed"), f"bounce+{TAG}@{DOMAIN}")
    assert [(r.kind, r.tag, r.recipient) for r in reports.received] == [
        (BounceKind.HARD, other, "dave.example@gmail.com"),
        (BounceKind.SOFT, TAG, "grace@example.com"),
    ]


@pytest.mark.parametrize("to", [
    "postmaster@bounces.example.org",
    f"bounce+{TAG}@other.example.org",
    f"bounce+{TAG.upper()}@bounces.example.org",
    "bounce+not-a-tag@bounces.example.org",
])
async def test_any_other_recipient_is_refused_with_550(
    listener: BounceListener, reports: Reports, to: str
) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await send(listener, sample("postfix_user_unknown"), to)
    [(code, _)] = refused.value.recipients.values()
    assert code == 550
    assert reports.received == []


async def test_an_oversized_message_is_refused_with_552(
    listener: BounceListener, reports: Reports
) -> None:
    padding = (b"\r\n" + b"y" * 76) * (LIMIT // 78 + 10)
    big = sample("postfix_user_unknown").replace(b"Hi Bob", b"Hi Bob" + padding)
    assert len(big) > LIMIT
    # announced with SIZE (as smtplib does when the server offers it): refused at MAIL FROM
    with pytest.raises(smtplib.SMTPSenderRefused) as at_mail:
        await send(listener, big, f"bounce+{TAG}@{DOMAIN}")
    assert at_mail.value.smtp_code == 552

    def unannounced(client: smtplib.SMTP) -> tuple[int, bytes]:
        client.ehlo()
        client.mail("")
        client.rcpt(f"bounce+{TAG}@{DOMAIN}")
        return client.data(big)

    code, _ = await in_session(listener, unannounced)
    assert code == 552
    assert reports.received == []


async def test_a_failing_on_report_answers_451_and_the_retry_is_taken(
    listener: BounceListener, reports: Reports, caplog: pytest.LogCaptureFixture
) -> None:
    reports.failures = 1
    with pytest.raises(smtplib.SMTPDataError) as failed:
        await send(listener, sample("postfix_user_unknown"), f"bounce+{TAG}@{DOMAIN}")
    assert failed.value.smtp_code == 451
    assert reports.received == []
    # logged without content: no address, no diagnostic, not the error's text
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "RuntimeError" in logged
    assert "bob@example.com" not in logged and "shard away" not in logged

    await send(listener, sample("postfix_user_unknown"), f"bounce+{TAG}@{DOMAIN}")
    assert [(r.kind, r.tag) for r in reports.received] == [(BounceKind.HARD, TAG)]


async def test_mail_that_is_no_report_is_accepted_and_dropped(
    listener: BounceListener, reports: Reports
) -> None:
    assert await send(listener, sample("plain"), f"bounce+{TAG}@{DOMAIN}") == {}
    assert await send(listener, b"\x00\xff garbage\r\n", f"bounce+{TAG}@{DOMAIN}") == {}
    assert reports.received == []


async def test_close_stops_listening(reports: Reports) -> None:
    listener = BounceListener(HOST, 0, DOMAIN, reports)
    await listener.start()
    port = listener.port
    await send(listener, sample("arf_abuse"), f"bounce+{TAG}@{DOMAIN}")
    await listener.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(_session, port, lambda client: client.noop())
    assert [r.kind for r in reports.received] == [BounceKind.COMPLAINT]


async def test_one_report_per_return_path_it_was_sent_to(
    listener: BounceListener, reports: Reports
) -> None:
    tags = [make_tag(0), make_tag(3)]
    rcpts = [f"bounce+{tag}@{DOMAIN}" for tag in tags]
    await in_session(listener, lambda client: client.sendmail("", [*rcpts, rcpts[0]],
                                                               sample("exim_failed")))
    assert [(r.kind, r.tag, r.recipient) for r in reports.received] == [
        (BounceKind.HARD, tags[0], "carol@example.net"), (BounceKind.HARD, tags[1], "carol@example.net")]

    def too_many(client: smtplib.SMTP) -> list[int]:
        client.ehlo()
        client.mail("")
        return [client.rcpt(f"bounce+{make_tag(0)}@{DOMAIN}")[0] for _ in range(11)]

    assert await in_session(listener, too_many) == [250] * 10 + [452]
