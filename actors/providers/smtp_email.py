"""SMTP email provider: send rendered messages over a small pool of reused aiosmtplib connections.

One ``SmtpProvider`` per channel actor. Connections are opened lazily, at most ``pool_size`` at
a time, and reused across messages (never one per message, httpx#1042). A connection that raised
is closed and dropped; one that the server hung up on while idle is replaced transparently.
Every SMTP, socket and address error becomes a ``ProviderError`` in one place,
``_error_to_provider_error``. Logs carry the tag only: never addresses, subjects or bodies.

``build_email`` writes each message once, straight to the bytes ``SMTP.sendmail`` puts on the
wire: what ``email.message.EmailMessage`` and ``SMTP.send_message`` produced, without their
cost (they parsed every header and flattened the message again for each send).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import functools
import logging
import random
import re
import ssl
import sys
from dataclasses import dataclass
from email import policy, quoprimime
from email.headerregistry import AddressHeader, BaseHeader
from email.utils import format_datetime, parseaddr
from typing import cast

import aiosmtplib
from aiosmtplib.email import parse_address

from actors.providers.base import Provider
from herald.config import SmtpTarget
from herald.errors import PermanentProviderError, ProviderError, TransientProviderError
from herald.outcome import Outcome
from herald.render import Message

__all__ = ["Email", "SmtpProvider", "build_email"]

log = logging.getLogger(__name__)

#: Longest server reply kept in an outcome's ``error``.
_MAX_REPLY = 200
#: A polite QUIT on close must not hold an actor's shutdown for the full command timeout.
_QUIT_TIMEOUT = 5.0

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


class SmtpProvider(Provider):
    """Deliver email through one SMTP server (``SmtpTarget``) with pooled connections.

    ``tls_context`` (optional) replaces the default certificate checks for STARTTLS and
    implicit TLS, e.g. to trust a private CA.
    """

    name = "smtp"

    def __init__(
        self,
        target: SmtpTarget,
        sender: str,
        pool_size: int = 8,
        timeout: float = 30.0,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self._target = target
        self._sender = sender
        self._pool_size = pool_size
        self._timeout = timeout
        self._tls_context = tls_context
        # A send holds a slot for its whole transaction, so open connections (idle + busy)
        # never outnumber the slots: a connection is only created when no idle one is left.
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[aiosmtplib.SMTP] = []
        self._closed = False

    async def start(self) -> None:
        """Accept sends again; connections open on first use so a down server cannot stop us."""
        self._closed = False

    async def close(self) -> None:
        """Stop taking sends, wait for those in flight, then QUIT every pooled connection."""
        self._closed = True
        acquired = 0
        try:
            for _ in range(self._pool_size):
                await self._slots.acquire()
                acquired += 1
            idle, self._idle = self._idle, []
            await asyncio.gather(*(self._quit(smtp) for smtp in idle))
        finally:
            for _ in range(acquired):
                self._slots.release()

    async def send(self, message: Message) -> Outcome:
        try:
            email = build_email(message, self._sender)
            await self._transmit(email)
        except Exception as exc:
            error = _error_to_provider_error(exc)
            log.info(
                "smtp send failed",
                extra={"tag": message.tag, "code": error.provider_code,
                       "transient": isinstance(error, TransientProviderError)},
            )
            if error is exc:
                raise
            raise error from exc
        log.debug("smtp sent", extra={"tag": message.tag})
        return Outcome(message.tag, "sent", self.name, provider_id=email.message_id)

    async def _transmit(self, email: Email) -> None:
        async with self._slots:
            if self._closed:
                raise TransientProviderError("smtp provider is closed")
            while True:
                smtp, reused = await self._checkout()
                try:
                    await _sendmail(smtp, email)
                except BaseException as exc:
                    smtp.close()  # its state is unknown: never hand it to the next message
                    if reused and isinstance(exc, ConnectionError):
                        # The server dropped it while it sat idle (its own idle timeout);
                        # the loop ends on a fresh connection, whose errors are raised.
                        continue
                    raise
                self._idle.append(smtp)
                return

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An idle live connection (most recently used first), else a new one; and if reused."""
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp, True
            smtp.close()
        try:
            return await self._connect(), False
        except Exception as exc:
            raise _error_to_provider_error(exc, connecting=True) from exc

    async def _connect(self) -> aiosmtplib.SMTP:
        target = self._target
        smtp = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            timeout=self._timeout,
            use_tls=target.use_tls,
            # Explicit, never opportunistic: a server we were not told speaks TLS is used as is.
            start_tls=target.starttls and not target.use_tls,
            tls_context=self._tls_context,
        )
        await smtp.connect()  # connects, EHLO, STARTTLS and AUTH as configured
        log.debug("smtp connection opened", extra={"host": target.host, "port": target.port})
        return smtp

    async def _quit(self, smtp: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(Exception):
            await smtp.quit(timeout=min(self._timeout, _QUIT_TIMEOUT))
        smtp.close()


@dataclass(frozen=True, slots=True)
class Email:
    """A message as it goes on the wire: its SMTP envelope and its bytes, written once."""

    message_id: str
    #: The envelope (MAIL FROM, RCPT TO): the addresses in the From and To headers.
    sender: str
    recipients: tuple[str, ...]
    #: An address is not ASCII: the server must offer SMTPUTF8, and headers are raw UTF-8.
    smtputf8: bool
    #: The message with CRLF line ends, 8-bit text parts as they are (for 8BITMIME servers).
    data: bytes
    #: The same for a server without 8BITMIME, 8-bit text parts in base64 (often ``data`` itself).
    data_7bit: bytes


def build_email(message: Message, default_sender: str) -> Email:
    """The MIME message for ``message``: text part, HTML alternative, Herald's headers.

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

    fold_policy = policy.SMTPUTF8 if smtputf8 else policy.SMTP
    lines = [_fold(name, header, fold_policy) for name, header in headers.items()]
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


async def _sendmail(smtp: aiosmtplib.SMTP, email: Email) -> None:
    """Send ``email`` on ``smtp`` with the options ``SMTP.send_message`` chose from the server's."""
    if smtp.is_ehlo_or_helo_needed:
        await _greet(smtp)
    options = ["SMTPUTF8"] if email.smtputf8 else []  # sendmail refuses it without the extension
    if smtp.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
        data = email.data
    else:
        data = email.data_7bit
    await smtp.sendmail(email.sender, list(email.recipients), data, mail_options=options)


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO where the server refuses it, as aiosmtplib does before a first message."""
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()


def _error_to_provider_error(exc: BaseException, *, connecting: bool = False) -> ProviderError:
    """The one mapping from what SMTP sending can raise to Herald's provider errors.

    A server reply decides by its class: 4xx transient, 5xx permanent, the code kept as
    ``provider_code``. While ``connecting`` (connect, EHLO, STARTTLS, AUTH) nothing is about
    the message, so even a 5xx (a wrong password, a refused client) is transient: the server
    or our configuration needs fixing, and the message must survive until it is. Sockets,
    timeouts and disconnects are transient; an address aiosmtplib will not put on the wire,
    or a message the server cannot take (``SMTPNotSupported``, e.g. SMTPUTF8), is permanent.
    """
    if isinstance(exc, ProviderError):
        return exc
    reply: aiosmtplib.SMTPResponseException | None = None
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        reply = exc.recipients[0]
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = exc
    if reply is not None:
        code = str(reply.code)
        text = f"SMTP {code} {reply.message}"[:_MAX_REPLY]
        if 500 <= reply.code < 600 and not connecting:
            return PermanentProviderError(text, provider_code=code)
        return TransientProviderError(text, provider_code=code)
    # OSError covers ConnectionError, TimeoutError, ssl.SSLError and aiosmtplib's
    # SMTPServerDisconnected / SMTPConnectError / SMTPTimeoutError subclasses of them.
    if isinstance(exc, OSError):
        return TransientProviderError(f"SMTP connection failed: {type(exc).__name__}: {exc}")
    if not connecting:
        if isinstance(exc, ValueError):  # the text names the address: keep it out
            return PermanentProviderError("invalid sender or recipient address")
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return PermanentProviderError(f"SMTP server cannot take this message: {exc.message}")
    return TransientProviderError(f"{type(exc).__name__}: {exc}")
