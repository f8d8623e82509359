"""SMTP email provider: send rendered messages over a small pool of reused aiosmtplib connections.

One ``SmtpProvider`` per channel actor. Connections are opened lazily and reused across messages
(never one per message, httpx#1042). A connection that raised is closed and dropped; one that
the server hung up on while idle is replaced transparently. Every SMTP, socket and address error
becomes a ``ProviderError`` in one place, ``_error_to_provider_error``. Logs carry the tag only:
never addresses, subjects or bodies.

How many connections: ``herald.connection_sizing.ConnectionSizer`` starts with two and adds one
while sends queue, up to ``pool_size`` (``HERALD_SMTP_POOL_SIZE``), unless the relay's measured
per-message latency says the last one added made it send less (then one fewer, for a while).
Sends wait for a connection in a ``herald.priority_gate.PriorityGate``: an asap message takes
the next free one, ahead of every normal message already waiting.

Messages are written once per attempt by ``herald.email_message.build_email`` and sent as raw
bytes (a connection replaced mid-send gets the same bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time

import aiosmtplib

from actors.providers.base import Provider
from herald.config import SmtpTarget
from herald.connection_sizing import ConnectionSizer
from herald.email_message import Email, build_email
from herald.errors import PermanentProviderError, ProviderError, TransientProviderError
from herald.outcome import Outcome
from herald.priority import MAX_PRIORITY
from herald.priority_gate import PriorityGate
from herald.render import Message

__all__ = ["SmtpProvider"]

log = logging.getLogger(__name__)

#: Longest server reply kept in an outcome's ``error``.
_MAX_REPLY = 200
#: How the error of an address the server refused at RCPT starts: a hard bounce in the session
#: (5xx), after which the address is suppressed (``actors/channels.py``).
RCPT_REFUSED = "RCPT refused: "
#: A polite QUIT on close must not hold an actor's shutdown for the full command timeout.
_QUIT_TIMEOUT = 5.0

class SmtpProvider(Provider):
    """Deliver email through one SMTP server (``SmtpTarget``) with pooled connections.

    ``tls_context`` (optional) replaces the default certificate checks for STARTTLS and
    implicit TLS, e.g. to trust a private CA. ``bounce_domain`` (``HERALD_BOUNCE_DOMAIN``) makes
    each message's envelope sender its return path ``bounce+{tag}@{bounce_domain}``.
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
        bounce_domain: str | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self._target = target
        self._sender = sender
        self._timeout = timeout
        self._tls_context = tls_context
        self._bounce_domain = bounce_domain
        self.sizer = ConnectionSizer(pool_size)
        # A send holds a slot for its whole transaction, so open connections (idle + busy)
        # never outnumber the slots: a connection is only created when no idle one is left.
        self.gate: PriorityGate = PriorityGate(self.sizer.size)
        self._idle: list[aiosmtplib.SMTP] = []
        self._open = 0
        self._closed = False

    async def start(self) -> None:
        """Accept sends again; connections open on first use so a down server cannot stop us."""
        self._closed = False

    async def close(self) -> None:
        """Stop taking sends, wait for those in flight, then QUIT every pooled connection."""
        self._closed = True  # from now on the gate's capacity stays as it is
        acquired = 0
        try:
            for _ in range(self.gate.capacity):
                await self.gate.acquire(MAX_PRIORITY + 1)  # ahead of every queued send
                acquired += 1
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            await asyncio.gather(*(self._quit(smtp) for smtp in idle))
        finally:
            for _ in range(acquired):
                self.gate.release()

    async def send(self, message: Message) -> Outcome:
        try:
            email = build_email(message, self._sender, self._bounce_domain)
            await self._transmit(email, message.priority)
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

    async def _transmit(self, email: Email, priority: int) -> None:
        async with self.gate.slot(priority):
            if self._closed:
                raise TransientProviderError("smtp provider is closed")
            # Only a full pool's latencies say what one more connection would add.
            size = self.gate.capacity
            full = self.gate.held >= size
            while True:
                smtp, reused = await self._checkout()
                started = time.monotonic()
                try:
                    await _sendmail(smtp, email)
                except BaseException as exc:
                    self._drop(smtp)  # its state is unknown: never hand it to the next message
                    if reused and isinstance(exc, ConnectionError):
                        # The server dropped it while it sat idle (its own idle timeout);
                        # the loop ends on a fresh connection, whose errors are raised.
                        continue
                    raise
                break
            finished = time.monotonic()
            if full:
                self.sizer.observe(finished - started, size)
            if not self._closed:  # ``close`` counts on the capacity it started with
                self.gate.resize(self.sizer.decide(self.gate.waiting, finished))
            if self._open > self.gate.capacity:  # the sizer went back one: this one goes
                self._open -= 1  # now, so that sends finishing meanwhile keep theirs
                await self._quit(smtp)
            else:
                self._idle.append(smtp)

    def _drop(self, smtp: aiosmtplib.SMTP) -> None:
        smtp.close()
        self._open -= 1

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """An idle live connection (most recently used first), else a new one; and if reused."""
        while self._idle:
            smtp = self._idle.pop()
            if smtp.is_connected:
                return smtp, True
            self._drop(smtp)
        try:
            smtp = await self._connect()
        except Exception as exc:
            raise _error_to_provider_error(exc, connecting=True) from exc
        self._open += 1
        return smtp, False

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
        try:
            with contextlib.suppress(Exception):
                await smtp.quit(timeout=min(self._timeout, _QUIT_TIMEOUT))
        finally:
            smtp.close()  # cancelled mid-QUIT too: the socket must not outlive the count


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
    prefix = ""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        reply, prefix = exc.recipients[0], RCPT_REFUSED  # a bounce during the session
    elif isinstance(exc, aiosmtplib.SMTPResponseException):
        reply = exc
    if reply is not None:
        code = str(reply.code)
        text = f"{prefix}SMTP {code} {reply.message}"[:_MAX_REPLY]
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
