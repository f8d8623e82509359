"""Bounces and complaints by SMTP (issue 20, 4), against a running Herald: an email goes out with
the VERP return path; a DSN sent to the bounce listener makes it ``bounced`` and suppresses the
address; an ARF complaint suppresses it and turns the category off for email; a soft bounce
changes nothing."""

from __future__ import annotations

import re
import smtplib
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import BOUNCE_DOMAIN, Service
from tests.support.bounce_samples import TAG, sample
from tests.support.payloads import email_payload

pytestmark = pytest.mark.ray


def _sent(client: httpx.Client, address: str, uid: str) -> str:
    tag = str(client.post("/v1/notifications", json=email_payload(to=address, uid=uid)).json()[
        "details"]["tag"])
    assert client.get(f"/v1/notifications/{tag}", params={"wait": 20}).json()["status"] == "sent"
    return tag


def _report(service: Service, name: str, tag: str, address: str, original: str) -> None:
    """The sample ``name`` about ``tag`` and ``address``, sent to the bounce listener."""
    message = sample(name).replace(TAG.encode(), tag.encode())
    message = re.sub(re.escape(original).encode(), address.encode(), message, flags=re.IGNORECASE)
    port = service.herald.settings.bounce_port
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("MAILER-DAEMON@mail.example.org", [f"bounce+{tag}@{BOUNCE_DOMAIN}"], message)


def _status(client: httpx.Client, tag: str, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status: dict[str, Any] = client.get(f"/v1/notifications/{tag}").json()
        if status["status"] == wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def _suppressed(client: httpx.Client) -> dict[str, str]:
    return {e["contact"]: e["reason"] for e in client.get("/v1/suppressions").json()["items"]}


def test_a_hard_bounce_makes_the_email_bounced_and_suppresses_the_address(
        service: Service) -> None:
    address = f"gone-{uuid.uuid4().hex[:6]}@example.com"
    with service.client() as client:
        tag = _sent(client, address, "bounce-user")
        _report(service, "mailbox_full", tag, address, "frank@example.com")  # soft: nothing
        assert client.get(f"/v1/notifications/{tag}").json()["status"] == "sent"
        _report(service, "postfix_user_unknown", tag, address, "bob@example.com")
        status = _status(client, tag, "bounced")
        assert (status["status"], status["reason"]) == ("bounced", "5.1.1")
        assert _suppressed(client)[address] == "bounced"
        again = client.post("/v1/notifications", json=email_payload(to=address)).json()
        final = client.get(f"/v1/notifications/{again['details']['tag']}", params={"wait": 10})
        assert (final.json()["status"], final.json()["reason"]) == ("suppressed", "bounced")


def test_a_complaint_suppresses_the_address_and_turns_the_category_off(service: Service) -> None:
    address = f"angry-{uuid.uuid4().hex[:6]}@example.com"
    uid = f"u-{uuid.uuid4().hex[:6]}"
    with service.client() as client:
        tag = _sent(client, address, uid)
        _report(service, "arf_abuse", tag, address, "erin@example.com")
        deadline = time.monotonic() + 10
        while address not in _suppressed(client):
            assert time.monotonic() < deadline, "the complaint suppressed nothing"
            time.sleep(0.05)
        assert _suppressed(client)[address] == "complained"
        assert client.get(f"/v1/users/{uid}").json()["preferences"] == {"CM": {"email": False}}
        assert client.get(f"/v1/notifications/{tag}").json()["status"] == "sent"
