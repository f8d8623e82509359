"""Bounce and complaint reports read from realistic DSNs and ARF reports, and nothing else."""

from __future__ import annotations

import random
import time

import pytest

from herald.bounce_reports import (
    MAX_DIAGNOSTIC,
    MAX_REPORT_BYTES,
    BounceKind,
    BounceReport,
    parse_report,
)
from herald.sharding import make_tag
from tests.support.bounce_samples import TAG, sample


def test_postfix_user_unknown_is_a_hard_bounce_of_the_original_recipient() -> None:
    report = parse_report(sample("postfix_user_unknown"), None)
    assert report == BounceReport(
        kind=BounceKind.HARD, tag=TAG, recipient="bob@example.com", status="5.1.1",
        diagnostic="smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: "
                   "User unknown in local recipient table",
    )


def test_exim_failure_with_a_generic_status_is_hard_and_finds_the_tag_in_the_returned_email() -> None:
    report = parse_report(sample("exim_failed"), None)
    assert report is not None
    assert (report.kind, report.tag, report.recipient, report.status) == (
        BounceKind.HARD, TAG, "carol@example.net", "5.0.0")
    assert report.diagnostic is not None and report.diagnostic.startswith("smtp; 550 5.1.1")


def test_gmail_failure_with_returned_headers_only() -> None:
    report = parse_report(sample("gmail_no_such_user"), None)
    assert report is not None
    assert (report.kind, report.tag, report.recipient, report.status) == (
        BounceKind.HARD, TAG, "dave.example@gmail.com", "5.1.1")
    # a folded multi-line reply comes back on one line, bounded
    assert report.diagnostic is not None
    assert "\r" not in report.diagnostic and "\n" not in report.diagnostic
    assert report.diagnostic.startswith("smtp; 550-5.1.1 The email account that you tried to reach")
    assert "550-5.1.1 double-checking" in report.diagnostic
    assert len(report.diagnostic) <= MAX_DIAGNOSTIC


def test_the_tag_of_the_return_path_wins_over_the_returned_email() -> None:
    other = make_tag(1)
    report = parse_report(sample("gmail_no_such_user"), other)
    assert report is not None and report.tag == other


@pytest.mark.parametrize("header", [b"X-Herald-Tag", b"X-Original-Message-ID"])
def test_the_tag_is_found_without_one_of_the_places_it_is_carried(header: bytes) -> None:
    message = sample("gmail_no_such_user").replace(header + b":", b"X-Removed:")
    report = parse_report(message, None)
    assert report is not None and report.tag == TAG


def test_mailbox_full_is_soft() -> None:
    report = parse_report(sample("mailbox_full"), None)
    assert report == BounceReport(BounceKind.SOFT, TAG, "frank@example.com", "4.2.2",
                                  "smtp; 452 4.2.2 <frank@example.com>: Mailbox full")


def test_a_delayed_delivery_is_soft() -> None:
    report = parse_report(sample("delayed"), None)
    assert report == BounceReport(
        BounceKind.SOFT, TAG, "grace@example.com", "4.4.1",
        "X-Postfix; connect to mx.example.com[192.0.2.25]:25: Connection timed out")


def test_an_arf_abuse_report_is_a_complaint() -> None:
    report = parse_report(sample("arf_abuse"), None)
    assert report == BounceReport(BounceKind.COMPLAINT, TAG, "erin@example.com", None, "abuse")


def test_a_redacted_arf_report_names_the_returned_emails_recipient_and_tag() -> None:
    message = (sample("arf_abuse").replace(b"Original-Rcpt-To:", b"X-Redacted:")
               .replace(b"Original-Mail-From:", b"X-Redacted:"))
    report = parse_report(message, None)
    assert report == BounceReport(BounceKind.COMPLAINT, TAG, "erin@example.com", None, "abuse")


def test_a_not_spam_report_is_no_complaint() -> None:
    assert parse_report(sample("arf_abuse").replace(b"Feedback-Type: abuse",
                                                    b"Feedback-Type: not-spam"), None) is None


def test_a_hard_failure_is_reported_before_a_soft_one_of_the_same_dsn() -> None:
    soft = (b"Final-Recipient: rfc822; frank@example.com\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n")
    message = sample("postfix_user_unknown").replace(b"Final-Recipient: rfc822; bob", soft +
                                                     b"Final-Recipient: rfc822; bob")
    report = parse_report(message, None)
    assert report is not None and (report.kind, report.recipient) == (BounceKind.HARD,
                                                                       "bob@example.com")


@pytest.mark.parametrize(("before", "after", "kind", "status"), [
    (b"Status: 5.1.1", b"Status: 5.1.1 (bad destination mailbox address)", BounceKind.HARD, "5.1.1"),
    (b"Status: 5.1.1", b"X-No-Status: 1", BounceKind.HARD, "5.1.1"),  # read from the diagnostic
    (b"Action: failed", b"Action: FAILED", BounceKind.HARD, "5.1.1"),
    (b"report-type=delivery-status", b'report-type="Delivery-Status"', BounceKind.HARD, "5.1.1"),
    (b"Status: 5.1.1", b"Status: 4.7.1", BounceKind.SOFT, "4.7.1"),
])
def test_variations_of_a_dsn(before: bytes, after: bytes, kind: BounceKind, status: str) -> None:
    report = parse_report(sample("postfix_user_unknown").replace(before, after), None)
    assert report is not None and (report.kind, report.status) == (kind, status)


@pytest.mark.parametrize(("before", "after"), [
    (b"Action: failed", b"Action: delivered"),  # a success notice is no bounce
    (b"Action: failed", b"Action: relayed"),
    (b"report-type=delivery-status", b"report-type=disposition-notification"),
    (b"multipart/report", b"multipart/mixed"),
    (b"Content-Type: message/delivery-status", b"Content-Type: text/plain"),
])
def test_what_reports_no_failure_is_none(before: bytes, after: bytes) -> None:
    message = sample("postfix_user_unknown").replace(before, after)
    assert message != sample("postfix_user_unknown")
    assert parse_report(message, None) is None


def test_recipients_of_another_address_type_or_malformed_are_not_named() -> None:
    message = (sample("postfix_user_unknown")
               .replace(b"Original-Recipient: rfc822;Bob@Example.COM", b"Original-Recipient: x400; C=US")
               .replace(b"Final-Recipient: rfc822; bob@example.com",
                        b"Final-Recipient: rfc822; bob@exa mple.com"))
    report = parse_report(message, None)
    assert report is not None and report.kind is BounceKind.HARD and report.recipient is None


def test_final_recipient_is_used_without_an_original_recipient() -> None:
    message = sample("postfix_user_unknown").replace(b"Original-Recipient:", b"X-Gone:")
    report = parse_report(message, None)
    assert report is not None and report.recipient == "bob@example.com"


def test_a_forged_tag_in_the_returned_email_is_not_taken() -> None:
    message = (sample("exim_failed").replace(f"X-Herald-Tag: {TAG}".encode(), b"X-Herald-Tag: ../evil")
               .replace(f"Message-ID: <{TAG}@".encode(), b"Message-ID: <evil@")
               .replace(b"Return-path: <bounce+", b"Return-path: <nobounce+"))
    report = parse_report(message, None)
    assert report is not None and report.kind is BounceKind.HARD and report.tag is None


def test_the_diagnostic_is_one_bounded_line_without_control_characters() -> None:
    long_reply = b"smtp; 550 5.1.1 " + b"x\x00\x1b" * 500
    message = sample("postfix_user_unknown").replace(
        b"Diagnostic-Code: smtp; 550 5.1.1", b"Diagnostic-Code: " + long_reply + b"\r\n  more")
    report = parse_report(message, None)
    assert report is not None and report.diagnostic is not None
    assert len(report.diagnostic) <= MAX_DIAGNOSTIC
    assert report.diagnostic.isprintable()


def test_plain_mail_is_none() -> None:
    assert parse_report(sample("plain"), None) is None


@pytest.mark.parametrize("message", [
    b"",
    b"\x00\xff\xfe garbage \x80\x81" * 100,
    b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary at all",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n",
    b"Content-Type: multipart/report; report-type=feedback-report; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: message/feedback-report\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"!!!not base64\r\n--b--\r\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: message/delivery-status\r\n\r\n\xff\xfe: \x00\r\n--b--\r\n",
])
def test_malformed_input_is_none(message: bytes) -> None:
    assert parse_report(message, None) is None


def test_random_bytes_and_truncations_never_raise() -> None:
    rng = random.Random(20)
    samples = [sample(name) for name in ("postfix_user_unknown", "gmail_no_such_user", "arf_abuse")]
    for _ in range(200):
        base = rng.choice(samples)
        cut = base[:rng.randrange(len(base))]
        noisy = bytearray(base)
        for _ in range(20):
            noisy[rng.randrange(len(noisy))] = rng.randrange(256)
        for message in (cut, bytes(noisy), rng.randbytes(rng.randrange(2000))):
            result = parse_report(message, None)
            assert result is None or isinstance(result, BounceReport)


def test_deep_nesting_is_none() -> None:
    nested = (b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
              b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
              + b"Content-Type: message/rfc822\r\n\r\n" * 5000)
    assert parse_report(nested, None) is None  # the email package's RecursionError, caught


def test_an_oversized_message_is_none() -> None:
    message = sample("postfix_user_unknown")
    padded = message.replace(b"Hi Bob", b"Hi Bob " + b"x" * MAX_REPORT_BYTES)
    assert parse_report(message, None) is not None
    assert parse_report(padded, None) is None


_REPORT = b"Content-Type: multipart/report; report-type=%s; boundary=b\r\n\r\n"
_ABUSE = b"--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n\r\n"


@pytest.mark.parametrize(("message", "expected"), [
    # the email package's header parser is quadratic: these took 85 s, 42 s, 47 s and 12 s
    (_REPORT % b"delivery-status" + b"; a=b" * 150_000, None),
    (_REPORT % b"delivery-status" + b"--b\r\nContent-Type: message/delivery-status"
     + b"; a=b" * 150_000 + b"\r\n\r\nAction: failed\r\n--b--\r\n", None),
    (_REPORT % b"feedback-report" + _ABUSE + b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
     b"To: " + b"a@b.example, " * 70_000 + b"\r\n--b--\r\n",
     BounceReport(BounceKind.COMPLAINT, None, "a@b.example", None, "abuse")),
    (_REPORT % b"delivery-status" + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 29_000, None),
])
def test_pathological_headers_and_parts_take_little_time(
    message: bytes, expected: BounceReport | None
) -> None:
    assert len(message) <= MAX_REPORT_BYTES
    started = time.monotonic()
    assert parse_report(message, None) == expected
    assert time.monotonic() - started < 5.0

