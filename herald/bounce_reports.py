"""Bounces and complaints read from the reports mail systems send back (no I/O here).

Two standard formats are understood, nothing heuristic: a delivery status notification (RFC 3464,
``multipart/report; report-type=delivery-status``) and an abuse report in the Abuse Reporting
Format (RFC 5965, ``report-type=feedback-report``). ``parse_report`` turns one into a typed
``BounceReport`` or answers None; it never raises, whatever bytes it is given.

Not flufl.bounce (Mailman's detectors, the well-kept library for this): it answers only sets of
addresses, from heuristics over many non-standard formats, with neither the status code, the
diagnostic nor complaints (ARF), which are what decide here between a hard bounce, a soft one
and a complaint. The standard library's parser already splits a ``message/delivery-status``
part into its field blocks and a ``message/feedback-report`` into its fields.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import AddressHeader
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import EmailPolicy
from typing import cast

from herald.return_path import LOCAL_PREFIX, is_tag

__all__ = ["MAX_REPORT_BYTES", "BounceKind", "BounceReport", "parse_report"]

#: Larger messages are not reports (a DSN returns at most the original message, and ours are small).
MAX_REPORT_BYTES = 1024 * 1024
#: Longest diagnostic kept (the server's reply, for a person to read).
MAX_DIAGNOSTIC = 300
#: Longest address kept (RFC 5321: 64 for the local part, 255 for the domain).
_MAX_ADDRESS = 320
#: Recipient blocks of one DSN looked at, at most (a Herald email has one or a few recipients).
_MAX_RECIPIENTS = 50
#: Lines starting "--" (MIME boundaries among them) a report may have: a DSN has a handful, and
#: the email package takes ~0.4 ms per part (30,000 tiny parts in 1 MB: 12 s of CPU).
_MAX_DASH_LINES = 200
#: Characters of a header value read: no field a report is read for is longer, and the email
#: package's header parser is quadratic in a value's length (one 750 KB Content-Type: 85 s).
_MAX_HEADER = 1000
#: An RFC 3463 status code (class.subject.detail) at the start of a field.
_STATUS = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})(?!\d)")
#: An enhanced status code within a diagnostic, e.g. "smtp; 550 5.1.1 <bob@…>: unknown".
_STATUS_IN_TEXT = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d])")
_WHITESPACE = re.compile(r"\s+")
#: A Message-ID of ours: ``<{tag}@{domain}>`` (``herald.email_message``).
_MESSAGE_ID = re.compile(r"\s*<([^@<>\s]+)@[^<>\s]*>\s*")
#: Feedback types (RFC 5965, RFC 6430) that are not a complaint about the mail.
_NOT_COMPLAINTS = frozenset({"not-spam"})


class BounceKind(str, enum.Enum):
    """What a report says about one email."""

    #: Delivery failed for good (``Action: failed``, a 5.x.x status): stop mailing the address.
    HARD = "hard"
    #: Delivery failed for now or is delayed (a 4.x.x status, ``Action: delayed``): nothing changes.
    SOFT = "soft"
    #: The recipient reported the email as abuse (an ARF feedback report).
    COMPLAINT = "complaint"


@dataclass(frozen=True, slots=True)
class BounceReport:
    """One bounce or complaint, as typed values (never the returned message's content)."""

    kind: BounceKind
    #: The notification's tag: the return path's, else the one the returned email carries.
    tag: str | None
    #: The address that bounced or complained, lower-cased; None when the report hides it.
    recipient: str | None
    #: The RFC 3463 status of a DSN (``"5.1.1"``); None for a complaint.
    status: str | None
    #: The DSN's Diagnostic-Code (one line, at most ``MAX_DIAGNOSTIC`` characters), or a
    #: complaint's Feedback-Type.
    diagnostic: str | None


class _BoundedPolicy(EmailPolicy):
    """``policy.default``, but every header value is cut at ``_MAX_HEADER`` characters as read."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        return name, value[:_MAX_HEADER]


_POLICY = _BoundedPolicy()


def parse_report(message: bytes, tag: str | None) -> BounceReport | None:
    """The bounce or complaint ``message`` reports, or None when it is neither a DSN nor an ARF
    report (or a DSN that reports no failure, e.g. ``Action: delivered``).

    ``tag`` is the one the return path it came to names (``herald.return_path``); without one,
    the tag is looked for in the returned email (its ``X-Herald-Tag``, else its Message-ID).
    """
    if len(message) > MAX_REPORT_BYTES or message.count(b"\n--") > _MAX_DASH_LINES:
        return None
    try:
        return _parse(message, tag)
    except Exception:  # noqa: BLE001 - malformed input, however it breaks the parser, is no report
        return None


def _parse(message: bytes, tag: str | None) -> BounceReport | None:
    parsed = cast(EmailMessage, BytesParser(policy=_POLICY).parsebytes(message))
    if parsed.get_content_type() != "multipart/report" or not parsed.is_multipart():
        return None
    report_type = str(parsed.get_param("report-type", "") or "").strip().lower()
    parts = list(parsed.iter_parts())[:8]  # a report has three; the rest is not read
    if report_type == "delivery-status":
        return _delivery_status(parts, tag)
    if report_type == "feedback-report":
        return _feedback_report(parts, tag)
    return None


def _delivery_status(parts: Sequence[Message], tag: str | None) -> BounceReport | None:
    """The worst recipient of a DSN: a hard failure before a soft one."""
    fields = _fields(parts, "message/delivery-status")
    if not fields:
        return None
    per_message, recipients = fields[0], fields[1:_MAX_RECIPIENTS + 1]
    found: list[tuple[BounceKind, Message, str]] = []
    for block in recipients:
        action = _text(block, "Action").strip().partition(" ")[0].lower()
        diagnostic = _text(block, "Diagnostic-Code")
        match = _STATUS.match(_text(block, "Status")) or _STATUS_IN_TEXT.search(diagnostic)
        status = match.group(1) if match else ""
        if action == "failed" and status.startswith("5."):
            found.append((BounceKind.HARD, block, status))
        elif (action == "failed" and status.startswith("4.")) or action == "delayed":
            found.append((BounceKind.SOFT, block, status))
    if not found:
        return None
    kind, block, status = min(found, key=lambda item: item[0] is not BounceKind.HARD)
    recipient = _address(_text(block, "Original-Recipient")) or _address(
        _text(block, "Final-Recipient"))
    if tag is None:
        tag = _tag_of_message_id(_text(per_message, "X-Original-Message-ID")) or _returned_tag(parts)
    return BounceReport(kind, tag, recipient, status or None,
                        _one_line(_text(block, "Diagnostic-Code")) or None)


def _feedback_report(parts: Sequence[Message], tag: str | None) -> BounceReport | None:
    fields = _fields(parts, "message/feedback-report")
    if not fields:
        return None
    report = fields[0]
    feedback_type = _one_line(_text(report, "Feedback-Type")).lower()
    if not feedback_type or feedback_type in _NOT_COMPLAINTS:
        return None
    returned = _returned(parts)
    recipient = _address(_text(report, "Original-Rcpt-To"))
    if recipient is None and returned is not None:
        recipient = _first_address(returned, "To")
    if tag is None:
        tag = _tag_of_return_path(_text(report, "Original-Mail-From"))
        if tag is None and returned is not None:
            tag = _tag_of(returned)
    return BounceReport(BounceKind.COMPLAINT, tag, recipient, None, feedback_type[:MAX_DIAGNOSTIC])


def _fields(parts: Sequence[Message], content_type: str) -> list[Message]:
    """The field blocks of the report's machine-readable part (per-message block first), as the
    email package splits them (RFC 3464 and 5965 have these parts in 7 bits: never encoded)."""
    for part in parts:
        if part.get_content_type() == content_type:
            payload = part.get_payload()
            return [block for block in payload if isinstance(block, Message)] if isinstance(
                payload, list) else []
    return []


def _returned(parts: Sequence[Message]) -> Message | None:
    """The returned email (whole, or its headers only), if the report carries it."""
    for part in parts:
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif content_type == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return BytesHeaderParser(policy=_POLICY).parsebytes(raw)
    return None


def _returned_tag(parts: Sequence[Message]) -> str | None:
    returned = _returned(parts)
    return _tag_of(returned) if returned is not None else None


def _tag_of(returned: Message) -> str | None:
    """The tag an outgoing Herald email carries: its X-Herald-Tag, else its Message-ID's."""
    carried = _text(returned, "X-Herald-Tag").strip()
    if is_tag(carried):
        return carried
    return _tag_of_message_id(_text(returned, "Message-ID")) or _tag_of_return_path(
        _text(returned, "Return-Path"))


def _tag_of_message_id(value: str) -> str | None:
    match = _MESSAGE_ID.fullmatch(value)
    return match.group(1) if match and is_tag(match.group(1)) else None


def _tag_of_return_path(value: str) -> str | None:
    """The tag of a ``bounce+{tag}@…`` address (whatever its domain: the tag alone is read)."""
    address = _address(value)
    local = address.rpartition("@")[0] if address else ""
    tag = local.removeprefix(LOCAL_PREFIX) if local.startswith(LOCAL_PREFIX) else ""
    return tag if is_tag(tag) else None


def _text(block: Message, name: str) -> str:
    """A field's value as text ("" when absent or unreadable)."""
    try:
        value = block.get(name)
    except Exception:  # noqa: BLE001 - a header the parser cannot read is as good as absent
        return ""
    return str(value) if value is not None else ""


def _address(value: str) -> str | None:
    """The bare address of ``rfc822;bob@example.com`` or ``<bob@example.com>``, lower-cased."""
    kind, semicolon, address = value.partition(";")
    if not semicolon:
        address = kind
    elif kind.strip().lower() != "rfc822":
        return None
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    if (not address or len(address) > _MAX_ADDRESS or "@" not in address
            or any(ch.isspace() or ch in "<>" or not ch.isprintable() for ch in address)):
        return None
    return address.lower()


def _first_address(message: Message, name: str) -> str | None:
    try:
        header = message.get(name)
        addresses = header.addresses if isinstance(header, AddressHeader) else ()
    except Exception:  # noqa: BLE001 - as in _text
        return None
    return _address(addresses[0].addr_spec) if addresses else None


def _one_line(text: str) -> str:
    """``text`` on one line (CR, LF, other control characters and runs of white space become
    one space), bounded."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text[:4 * MAX_DIAGNOSTIC])
    return _WHITESPACE.sub(" ", printable).strip()[:MAX_DIAGNOSTIC]
