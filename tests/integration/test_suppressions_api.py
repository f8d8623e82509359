"""Suppressed contacts over HTTP (issue 20, 4), against a running Herald: the tenant's list by
hand, and an SMS STOP from Twilio (signed) suppressing the number for the sender texted, START
lifting it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import TWILIO_TOKEN, Service
from tests.support.payloads import email_payload

pytestmark = pytest.mark.ray
SENDER = "+15005550006"  # the service's HERALD_TWILIO_FROM


def _sms(to: str) -> dict[str, object]:
    return {"type": "CM_SMS", "user": {"uid": f"u-{uuid.uuid4().hex[:6]}"},
            "details": {"to": to, "content": "Your parcel is on its way"}}


def _final(client: httpx.Client, tag: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/v1/notifications/{tag}", params={"wait": 20}).json()
    return answer


def test_a_contact_suppressed_by_hand_is_not_mailed_until_lifted(service: Service) -> None:
    address = f"gone-{uuid.uuid4().hex[:6]}@example.com"
    with service.client("tenant-a") as a, service.client("tenant-b") as b:
        added = a.post("/v1/suppressions", json={"contact": address.upper()})
        assert added.status_code == 201, added.text
        assert added.json()["contact"] == address and added.json()["reason"] == "manual"
        assert address in [e["contact"] for e in a.get("/v1/suppressions").json()["items"]]
        assert address not in [e["contact"] for e in b.get("/v1/suppressions").json()["items"]]
        bad = a.post("/v1/suppressions", json={"contact": "not a contact"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "contact"
        tag = a.post("/v1/notifications", json=email_payload(to=address)).json()["details"]["tag"]
        status = _final(a, tag)
        assert (status["status"], status["reason"]) == ("suppressed", "manual")
        theirs = b.post("/v1/notifications", json=email_payload(to=address)).json()
        assert _final(b, theirs["details"]["tag"])["status"] == "sent"  # another tenant's list
        assert a.delete(f"/v1/suppressions/{address}").status_code == 200
        assert a.delete(f"/v1/suppressions/{address}").status_code == 404
        again = a.post("/v1/notifications", json=email_payload(to=address)).json()
        assert _final(a, again["details"]["tag"])["status"] == "sent"


def test_an_sms_stop_suppresses_the_number_and_start_lifts_it(service: Service) -> None:
    number = f"+1415555{uuid.uuid4().int % 10_000:04d}"
    url = service.herald.settings.base_url() + "/v1/providers/twilio/inbound"

    def inbound(body: str, token: str = TWILIO_TOKEN) -> int:
        form = {"From": number, "To": SENDER, "Body": body, "MessageSid": "SM" + "0" * 32}
        signature = RequestValidator(token).compute_signature(url, form)
        with service.client() as anyone:
            answer = anyone.post("/v1/providers/twilio/inbound", data=form,
                                 headers={"X-Twilio-Signature": signature, "Authorization": ""})
        return answer.status_code

    assert inbound("STOP", token="forged-" + "x" * 25) == 401
    assert inbound("STOP") == 200
    with service.client() as client:
        stopped = client.post("/v1/notifications", json=_sms(number)).json()["details"]["tag"]
        status = _final(client, stopped)
        assert (status["status"], status["reason"]) == ("suppressed", "stop")
        assert number in [e["contact"] for e in client.get("/v1/suppressions").json()["items"]]
        assert inbound("start") == 200
        sent = client.post("/v1/notifications", json=_sms(number)).json()["details"]["tag"]
        assert _final(client, sent)["status"] in ("sent", "delivered")
