"""Dev-mode capture SMTP server: accept mail on loopback and record each message in the outbox.

Herald's real ``SmtpProvider`` talks to it unchanged. Each message becomes one ``email`` outbox
entry: ``from`` (the From header), ``to`` (the envelope recipients), ``subject``,
``message_id``, ``tag`` (``X-Herald-Tag``), ``text`` and ``html`` (``None`` when absent).
"""

from __future__ import annotations

import asyncio
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from capture import outbox

__all__ = ["CaptureSmtpServer", "LoopbackController"]

HOST = "127.0.0.1"


class LoopbackController(Controller):
    """An aiosmtpd ``Controller`` that may bind port 0; ``.port`` is the real port once started."""

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.Server:
        server = cast(asyncio.Server, await super()._create_server())
        self.port = server.sockets[0].getsockname()[1]
        return server


class _OutboxHandler:
    def __init__(self, outbox_dir: Path) -> None:
        self.outbox_dir = outbox_dir

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw or b""
        email = BytesParser(policy=policy.default).parsebytes(data)
        outbox.append(self.outbox_dir, "email", {
            "from": str(email.get("From", "")),
            "to": list(envelope.rcpt_tos),
            "subject": str(email.get("Subject", "")),
            "message_id": str(email.get("Message-ID", "")),
            "tag": str(email.get("X-Herald-Tag", "")),
            "text": _body(email, "plain") or "",
            "html": _body(email, "html"),
        })
        return "250 OK captured"


def _body(email: EmailMessage, subtype: str) -> str | None:
    part = email.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    # SMTP carries CRLF and the MIME body always ends in a line break; what Herald rendered
    # has plain LFs and may not end in one.
    return cast(str, part.get_content()).replace("\r\n", "\n").removesuffix("\n")


class CaptureSmtpServer:
    """An SMTP server on 127.0.0.1 that writes what it receives to ``outbox_dir``.

    ``port=0`` picks a free port, readable as ``.port`` after ``start()``.
    """

    def __init__(self, outbox_dir: Path, port: int = 0) -> None:
        self.outbox_dir = Path(outbox_dir)
        self.port = port
        self._controller: LoopbackController | None = None

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError("capture SMTP server already running")
        controller = LoopbackController(
            _OutboxHandler(self.outbox_dir), hostname=HOST, port=self.port,
            server_hostname="localhost",
        )
        controller.start()
        self.port = controller.port
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> CaptureSmtpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
