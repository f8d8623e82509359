"""A recording SMTP server (aiosmtpd) for tests and benchmarks: counts every message per X-Herald-Tag."""

from __future__ import annotations

import collections
import email
import email.policy
import threading
import time
from typing import Any

from aiosmtpd.controller import Controller

from capture.net import free_port


class RecordingHandler:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.by_tag: collections.Counter[str] = collections.Counter()
        # recipient → SMTP reply, e.g. "451 try later"; bytes go out as they are (odd encodings)
        self.refuse: dict[str, str | bytes] = {}
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: Any) -> str | bytes:
        reply = self.refuse.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            tag = message.get("X-Herald-Tag")
            if tag:
                self.by_tag[str(tag)] += 1
        return "250 Message accepted"


class SmtpSink:
    """``with SmtpSink() as sink:`` → sink.port, sink.handler.messages, sink.wait_for(n)."""

    def __init__(self, handler: RecordingHandler | None = None) -> None:
        self.handler = handler or RecordingHandler()
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait_for_tag(self, tag: str, timeout: float = 30.0) -> email.message.EmailMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.handler.lock:
                for message in self.handler.messages:
                    if message.get("X-Herald-Tag") == tag:
                        return message
            time.sleep(0.05)
        raise TimeoutError(f"no mail for {tag} within {timeout}s")
