"""Loopback peers for chaos runs, and what they received: the source of truth for lost and duplicates.

Each peer keeps its own record of what reached it: the SMTP sink counts mails per
``X-Herald-Tag``, the Twilio-compatible APIs keep every message (we find ours by a marker the
harness puts in the body), the fax API keeps every fax with its ``client_state`` (base64 of the
tag). ``Peers.received()`` turns those into one counter per channel, keyed the way the load
generator keys what it offered.
"""

from __future__ import annotations

import base64
import binascii
import collections
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from capture.fax_api import CaptureFaxApi
from capture.smtp_sink import SmtpSink
from capture.twilio_api import CaptureTwilioApi

#: How an SMS body names the notification it carries (the harness puts it in ``vars.ref``).
MARKER_RE = re.compile(r"\bchaos-[0-9a-f]{16}\b")
TWILIO_SID, TWILIO_TOKEN = "AC" + "2" * 32, "c" * 32
FAX_KEY = "fax-chaos-" + "k" * 16
TWILIO_FROM, FAX_FROM = "+15005550006", "+15005550007"


def new_marker() -> str:
    return "chaos-" + secrets.token_hex(8)


def _tag_of_client_state(value: Any) -> str | None:
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, ValueError):
        return None


@dataclass
class Peers:
    """The peers one Herald delivers to (started here, or the ``service`` fixture's)."""

    sink: SmtpSink
    twilio: CaptureTwilioApi
    twilio_backup: CaptureTwilioApi
    fax: CaptureFaxApi
    loop: Any = None  # launcher.runtime.LoopThread, when we started them
    owned: bool = False
    smtp_outages: int = field(default=0)
    smtp_is_down: bool = field(default=False)

    @classmethod
    def start(cls, outbox: Path) -> Peers:
        from launcher.runtime import LoopThread

        loop = LoopThread()
        twilio = CaptureTwilioApi(TWILIO_SID, TWILIO_TOKEN, outbox)
        backup = CaptureTwilioApi(TWILIO_SID, TWILIO_TOKEN, outbox)
        fax = CaptureFaxApi(FAX_KEY, outbox)
        for peer in (twilio, backup, fax):
            loop.run(peer.start())
        return cls(SmtpSink().start(), twilio, backup, fax, loop, owned=True)

    @classmethod
    def of_service(cls, service: Any) -> Peers:
        return cls(service.sink, service.twilio, service.twilio_backup, service.fax, service.loop)

    def stop(self) -> None:
        if not self.owned:
            return
        self.sink.stop()
        for peer in (self.twilio, self.twilio_backup, self.fax):
            self.loop.run(peer.stop())
        self.loop.stop()

    def settings(self) -> dict[str, Any]:
        """Keyword arguments of ``herald.config.Settings`` that point Herald at these peers."""
        return {
            "smtp_url": self.sink.url, "twilio_account_sid": TWILIO_SID,
            "twilio_auth_token": TWILIO_TOKEN, "twilio_base_url": self.twilio.base_url,
            "twilio_backup_base_url": self.twilio_backup.base_url, "twilio_from": TWILIO_FROM,
            "fax_api_key": FAX_KEY, "fax_base_url": self.fax.base_url,
            "fax_public_key": self.fax.public_key, "fax_connection_id": "conn-chaos",
            "fax_from": FAX_FROM,
        }

    def env(self) -> dict[str, str]:
        """The same as ``HERALD_*`` variables, for ``herald up``."""
        return {f"HERALD_{name.upper()}": str(value) for name, value in self.settings().items()}

    # -- faults -----------------------------------------------------------------------------
    def smtp_down(self) -> None:
        """Stop listening: connections to the SMTP port are refused."""
        self.sink.controller.stop()
        self.smtp_outages += 1
        self.smtp_is_down = True

    def smtp_up(self) -> None:
        """Listen again on the same port, same handler (same records)."""
        deadline = time.monotonic() + 10
        while True:
            controller = Controller(self.sink.handler, hostname="127.0.0.1", port=self.sink.port)
            try:
                controller.start()
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            self.sink.controller = controller
            self.smtp_is_down = False
            return

    def twilios(self) -> tuple[CaptureTwilioApi, CaptureTwilioApi]:
        return self.twilio, self.twilio_backup

    def calm(self) -> None:
        """Lift every fault this harness can inject (the shared service's peers go on serving)."""
        for api in self.twilios():
            api.fail_next(0)
            api.fail_until(0.0)
            api.delay_until(0.0, 0.0)
        if self.smtp_is_down:
            self.smtp_up()

    # -- what arrived -----------------------------------------------------------------------
    def received(self) -> dict[str, collections.Counter[str]]:
        """Per channel, how many times each key arrived: email and fax by tag, SMS by marker."""
        with self.sink.handler.lock:
            email = collections.Counter(self.sink.handler.by_tag)
        sms: collections.Counter[str] = collections.Counter()
        for api in self.twilios():
            for message in list(api.messages):
                sms.update(MARKER_RE.findall(str(message.get("body", ""))))
        fax: collections.Counter[str] = collections.Counter()
        for entry in list(self.fax.faxes):
            tag = _tag_of_client_state(entry.get("client_state"))
            if tag:
                fax[tag] += 1
        return {"email": email, "sms": sms, "fax": fax}


def duplicates(counts: collections.Counter[str], keys: Iterable[str]) -> int:
    """Extra copies of ``keys`` that arrived more than once."""
    return sum(counts[k] - 1 for k in keys if counts[k] > 1)
