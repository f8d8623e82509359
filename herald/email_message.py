"""An email message written once, straight to the bytes SMTP puts on the wire (no I/O here).

``build_email`` produces what ``email.message.EmailMessage`` + ``SMTP.send_message`` produced,
without their cost: they parsed every header and flattened the message again for each send.
Plain headers are written directly; anything unusual (non-ASCII, long, quoted) still goes
through ``email.policy.default`` to be folded and encoded. CR/LF in a header is refused.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import functools
import random
import re
import sys
from dataclasses import dataclass
from email import policy, quoprimime
from email.headerregistry import AddressHeader, BaseHeader
from email.utils import format_datetime, parseaddr
from typing import cast

from aiosmtplib.email import parse_address

from herald.errors import PermanentProviderError
from herald.render import Message
from herald.return_path import bounce_address

__all__ = ["Email", "build_email"]

#: Header and body lines longer than this are folded or encoded, as ``email.policy`` does.
_MAX_LINE = 78
#: Values a header may take that the email package would write out exactly as given: printable
#: ASCII, and for addresses and the Message-ID the plain forms of their syntax. The length and
#: "=?" (an encoded word, which it decodes) are checked in ``_header``; anything else is left to
#: the email package itself.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?: {_ATOM})* <{_ADDR_SPEC}>|{_ADDR_SPEC}")
_PLAIN_TEXT = re.compile(r"[ -~]*")
_PLAIN_VALUE = {
    "From": _PLAIN_ADDRESS,
    "To": _PLAIN_ADDRESS,
    "Subject": _PLAIN_TEXT,
    "X-Herald-Tag": _PLAIN_TEXT,
    "Message-ID": re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>"),
}
#: An unsubscribe URL: printable ASCII but "<" and ">", no space (RFC 2369 puts it in <>).
_UNSUBSCRIBE_URL = re.compile(r"https?://[!-;=?-~]+")
#: RFC 5322's limit on a line, CRLF excluded.
_MAX_LINE_HARD = 998


@dataclass(frozen=True, slots=True)
class Email:
    """A message as it goes on the wire: its SMTP envelope and its bytes, written once."""

    message_id: str
    #: The envelope (MAIL FROM, RCPT TO): the return path ``bounce+{tag}@{bounce_domain}`` or
    #: else the address in the From header, and the addresses in the To header.
    sender: str
    recipients: tuple[str, ...]
    #: An address is not ASCII: the server must offer SMTPUTF8, and headers are raw UTF-8.
    smtputf8: bool
    #: The message with CRLF line ends, 8-bit text parts as they are (for 8BITMIME servers).
    data: bytes
    #: The same for a server without 8BITMIME, 8-bit text parts in base64 (often ``data`` itself).
    data_7bit: bytes


def build_email(message: Message, default_sender: str, bounce_domain: str | None = None) -> Email:
    """The MIME message for ``message``: text part, HTML alternative, Herald's headers (and
    RFC 8058's ``List-Unsubscribe`` pair when it carries an unsubscribe URL).

    With a ``bounce_domain`` the envelope sender is the VERP return path of the tag
    (``herald.return_path``), so bounces come back to Herald's listener naming the notification;
    the From header stays as it is. A tag that makes no return path (never one of ``make_tag``'s)
    keeps the From address as envelope sender.

    The Message-ID is derived from the tag so that every attempt of one notification carries
    the same id (receivers can de-duplicate a retry). Header values with CR or LF are refused
    outright rather than trusted to the email package: header injection is never deliverable.
    The bytes are those ``EmailMessage`` with the default policy and ``SMTP.send_message``
    produced, but for the order of the MIME headers, the random boundary and the needless
    MIME-Version header ``add_alternative`` left in the HTML part.
    """
    if not message.to:
        raise PermanentProviderError("message has no recipient")
    sender = message.sender or default_sender
    values = {
        "From": sender,
        "To": message.to,
        "Subject": message.subject or "",
        "X-Herald-Tag": message.tag,
    }
    for name, value in values.items():
        if "\r" in value or "\n" in value:
            raise PermanentProviderError(f"{name} header contains CR or LF")
    values["Message-ID"] = f"<{message.tag}@{_message_id_domain(sender)}>"
    headers = {name: _header(name, value) for name, value in values.items()}

    # The envelope: the first From address, every To address.
    senders, recipients = _addr_specs(headers["From"]), _addr_specs(headers["To"])
    if not senders or not recipients:
        raise PermanentProviderError("invalid sender or recipient address")
    envelope = [senders[0], *recipients]
    if isinstance(headers["From"], BaseHeader) or isinstance(headers["To"], BaseHeader):
        for addr_spec in envelope:  # what SMTP.sendmail would refuse, refused before connecting
            try:
                parse_address(addr_spec)
            except ValueError as exc:  # its text names the address: keep it out
                raise PermanentProviderError("invalid sender or recipient address") from exc
    smtputf8 = not all(addr_spec.isascii() for addr_spec in envelope)
    if bounce_domain is not None:
        with contextlib.suppress(ValueError):
            envelope[0] = bounce_address(message.tag, bounce_domain)

    fold_policy = policy.SMTPUTF8 if smtputf8 else policy.SMTP
    lines = [_fold(name, header, fold_policy) for name, header in headers.items()]
    if message.unsubscribe_url is not None:
        lines.append(_list_unsubscribe(message.unsubscribe_url))
    lines.append(f"Date: {format_datetime(datetime.datetime.now(datetime.UTC))}\r\n")
    head = "".join(lines).encode("utf-8" if smtputf8 else "ascii", "surrogateescape")

    parts = [_text_part("plain", message.text)]
    if message.html:
        parts.append(_text_part("html", message.html))
    data = head + _mime_body(parts, seven_bit=False)
    if any(part.transfer_encoding == "8bit" for part in parts):
        data_7bit = head + _mime_body(parts, seven_bit=True)
    else:
        data_7bit = data
    return Email(
        message_id=str(headers["Message-ID"]), sender=envelope[0], recipients=tuple(envelope[1:]),
        smtputf8=smtputf8, data=data, data_7bit=data_7bit,
    )


@functools.lru_cache(maxsize=256)
def _message_id_domain(sender: str) -> str:
    """The domain of the sender's address, or "herald" (a provider sees few senders: cached)."""
    address = parseaddr(sender)[1]
    return (address.rpartition("@")[2] if "@" in address else "") or "herald"


def _header(name: str, value: str) -> str:
    """``value`` when the email package would write it out as given, else its parsed header.

    A parsed header is a ``BaseHeader``, a ``str`` subclass whose ``str`` is the decoded value.
    """
    if (
        len(name) + 2 + len(value) <= _MAX_LINE
        and "=?" not in value
        and _PLAIN_VALUE[name].fullmatch(value)
    ):
        return value
    try:
        header: BaseHeader = policy.default.header_store_parse(name, value)[1]
    except (ValueError, TypeError) as exc:  # other line breaks, unparsable values
        raise PermanentProviderError(f"invalid {name} header") from exc
    return header


def _list_unsubscribe(url: str) -> str:
    """RFC 8058's two headers: the link, and that one POST to it unsubscribes. The URL is never
    folded nor encoded (a receiver would not take it apart again): one line, up to 998."""
    line = f"List-Unsubscribe: <{url}>"
    if not _UNSUBSCRIBE_URL.fullmatch(url) or len(line) > _MAX_LINE_HARD:
        raise PermanentProviderError("invalid List-Unsubscribe header")
    return f"{line}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


def _fold(name: str, header: str, fold_policy: policy.Policy) -> str:
    """The header's line(s), CRLF-terminated."""
    if isinstance(header, BaseHeader):
        try:
            return header.fold(policy=fold_policy)
        except (ValueError, TypeError) as exc:
            raise PermanentProviderError(f"invalid {name} header") from exc
    return f"{name}: {header}\r\n" if header else f"{name}:\r\n"


def _addr_specs(header: str) -> list[str]:
    """The bare addresses of an address header, as ``SMTP.send_message`` took them."""
    if isinstance(header, BaseHeader):
        return [address.addr_spec for address in cast(AddressHeader, header).addresses]
    # ``addr-spec`` or ``name <addr-spec>``, a dot-atom address that SMTP.sendmail takes as is
    return [header.rpartition("<")[2].removesuffix(">")]


@dataclass(frozen=True, slots=True)
class _TextPart:
    subtype: str
    transfer_encoding: str
    body: bytes  # CRLF line ends, encoded as ``transfer_encoding`` says

    def headers(self, transfer_encoding: str) -> bytes:
        return (
            f'Content-Type: text/{self.subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {transfer_encoding}\r\n"
        ).encode("ascii")

    def write(self, seven_bit: bool) -> bytes:
        """Part headers, blank line and body; a server without 8BITMIME gets 8 bits in base64."""
        if seven_bit and self.transfer_encoding == "8bit":  # as email.generator re-encodes it
            body = base64.encodebytes(self.body.replace(b"\r\n", b"\n"))
            return self.headers("base64") + b"\r\n" + body.replace(b"\n", b"\r\n")
        return self.headers(self.transfer_encoding) + b"\r\n" + self.body


def _text_part(subtype: str, text: str) -> _TextPart:
    """A utf-8 text part, its transfer encoding chosen as ``email.contentmanager`` chooses it."""
    lines = text.encode("utf-8").splitlines()
    if max(map(len, lines), default=0) <= _MAX_LINE:
        body = b"\r\n".join(lines) + b"\r\n"
        return _TextPart(subtype, "7bit" if body.isascii() else "8bit", body)
    # Long lines: quoted-printable, unless base64 is shorter for the first ten lines.
    raw = b"\n".join(lines) + b"\n"
    sniff = b"\n".join(lines[:10]) + b"\n"
    if len(quoprimime.body_encode(sniff.decode("latin-1"), _MAX_LINE)) > len(binascii.b2a_base64(sniff)):
        transfer_encoding, encoded = "base64", base64.encodebytes(raw)
    else:
        transfer_encoding = "quoted-printable"
        encoded = quoprimime.body_encode(raw.decode("latin-1"), _MAX_LINE).encode("ascii")
    return _TextPart(subtype, transfer_encoding, encoded.replace(b"\n", b"\r\n"))


def _mime_body(parts: list[_TextPart], seven_bit: bool) -> bytes:
    """MIME-Version and what follows: one text part, or a multipart/alternative of them."""
    if len(parts) == 1:
        return b"MIME-Version: 1.0\r\n" + parts[0].write(seven_bit)
    written = [part.write(seven_bit) for part in parts]
    boundary = _boundary()
    while any(boundary in part for part in written):
        boundary = _boundary()
    delimiter = b"--" + boundary
    return b"".join([
        b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary=\"",
        boundary, b'"\r\n\r\n',
        *(delimiter + b"\r\n" + part + b"\r\n" for part in written),
        delimiter, b"--\r\n",
    ])


def _boundary() -> bytes:
    """A boundary like ``email.generator``'s: 15 "=", 19 random digits, "==" ."""
    return b"=" * 15 + b"%019d" % random.randrange(sys.maxsize) + b"=="
