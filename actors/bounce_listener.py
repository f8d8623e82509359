"""Inbound SMTP for bounces and complaints: the mail exchanger of ``HERALD_BOUNCE_DOMAIN``.

Mail systems send a DSN or an ARF report to the envelope sender of the email they are about,
which Herald makes the VERP return path ``bounce+{tag}@{domain}`` (``herald.return_path``). The
listener takes mail for such addresses only (any other recipient: 550), at most
``max_message_bytes`` of it (more: 552), reads each message with
``herald.bounce_reports.parse_report`` and awaits ``on_report`` once per tag it was addressed to.
A message that is no report (an auto-reply, a person answering) is accepted and dropped. When
``on_report`` fails the answer is 451, so the sender tries again later: ``on_report`` must take
the same report twice calmly.

It runs on the caller's asyncio loop (``loop.create_server``), not in aiosmtpd's threaded
``Controller``, because it lives inside an async Ray actor; the parse runs in a worker thread so
a large report does not stall that loop. Logs carry tags, kinds and status codes only: never
addresses, diagnostics or message content.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from herald.bounce_reports import MAX_REPORT_BYTES, BounceReport, parse_report
from herald.return_path import domain_name, tag_from_address

__all__ = ["BounceListener", "OnReport"]

log = logging.getLogger(__name__)

#: What the listener hands every report to (the shard that owns the tag, in Herald).
OnReport = Callable[[BounceReport], Awaitable[None]]
#: Recipients one message may have: a report comes back to one return path.
_MAX_RECIPIENTS = 10
#: An idle client is hung up on after this long (aiosmtpd's default is 5 minutes).
_IDLE_TIMEOUT = 120.0


class BounceListener:
    """An SMTP server on ``host``:``port`` taking reports for ``bounce+{tag}@{domain}``.

    ``port`` 0 binds a free port; ``port`` says which once ``start`` has returned.
    """

    def __init__(
        self,
        host: str,
        port: int,
        domain: str,
        on_report: OnReport,
        *,
        max_message_bytes: int = MAX_REPORT_BYTES,
    ) -> None:
        self._host = host
        self._port = port
        self._domain = domain_name(domain)
        self._handler = _ReportHandler(self._domain, on_report)
        self._max_message_bytes = max_message_bytes
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    @property
    def port(self) -> int:
        """The port bound (the one asked for until started)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        """Bind and listen; sessions are served on the running loop."""
        if self._server is not None:
            raise RuntimeError("bounce listener already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._session, self._host, self._port)
        log.info("bounce listener started", extra={"host": self._host, "port": self.port})

    async def close(self) -> None:
        """Stop listening and hang up on every client (a message not yet answered is sent again
        by its sender: nothing was acknowledged)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()

    def _session(self) -> SMTP:
        session = SMTP(
            self._handler,
            data_size_limit=self._max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=self._domain,  # not socket.getfqdn(): that may wait on DNS
            ident="Herald bounce listener",
            timeout=_IDLE_TIMEOUT,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(session)
        return session


class _ReportHandler:
    """aiosmtpd hooks: who may be written to, and what becomes of a message."""

    def __init__(self, domain: str, on_report: OnReport) -> None:
        self._domain = domain
        self._on_report = on_report

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if tag_from_address(address, self._domain) is None:
            return "550 5.1.1 No such mailbox here"
        if len(envelope.rcpt_tos) >= _MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # The tag each was written to wins over whatever the returned email claims.
        tags = dict.fromkeys(
            tag for tag in (tag_from_address(rcpt, self._domain) for rcpt in envelope.rcpt_tos) if tag)
        report = await asyncio.to_thread(parse_report, envelope.original_content or b"", None)
        if report is None:
            log.info("bounce listener: message is no report", extra={"tags": list(tags)})
            return "250 2.0.0 OK, not a report"
        for tag in tags:
            tagged = dataclasses.replace(report, tag=tag)
            try:
                await self._on_report(tagged)
            except Exception as exc:  # noqa: BLE001 - the sender keeps the report and tries again
                # The type only: an error's text may hold the address or the diagnostic.
                log.warning("bounce report not recorded", extra={
                    "tag": tag, "kind": report.kind.value, "error": type(exc).__name__})
                return "451 4.3.0 Report not recorded, try again later"
            log.info("bounce report", extra={
                "tag": tag, "kind": report.kind.value, "status": report.status})
        return "250 2.0.0 OK"
