"""Recipients over HTTP (issue 20, 2), against a running Herald: settings per tenant and user,
a category turned off gives ``suppressed`` (never sent), quiet hours hold a normal message and
let an asap one through."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import Service
from tests.support.payloads import email_payload

pytestmark = pytest.mark.ray


def _hhmm(epoch: float) -> str:
    return time.strftime("%H:%M", time.gmtime(epoch))


def test_settings_are_kept_per_tenant_and_user(service: Service) -> None:
    uid = f"u-{uuid.uuid4().hex[:8]}"
    body = {"timezone": "Europe/Berlin", "quiet_hours": {"start": "22:00", "end": "07:00"},
            "preferences": {"CM": {"email": False}}}
    with service.client("tenant-a") as a, service.client("tenant-b") as b:
        put = a.put(f"/v1/users/{uid}", json=body)
        assert put.status_code == 200, put.text
        assert put.json() == {"uid": uid, **body}
        assert a.get(f"/v1/users/{uid}").json() == {"uid": uid, **body}
        assert b.get(f"/v1/users/{uid}").json()["preferences"] == {}  # another tenant's user
        bad = a.put(f"/v1/users/{uid}", json={"timezone": "Mars/Olympus"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "timezone"
        assert a.put(f"/v1/users/{uid}", json={"colour": 1}).json()["error"]["field"] == "colour"
        assert a.get(f"/v1/users/{uid}", headers={"Authorization": ""}).status_code == 401
        assert a.delete(f"/v1/users/{uid}").json()["quiet_hours"] is None
        assert a.get(f"/v1/users/{uid}").json()["timezone"] is None


def test_a_category_turned_off_is_suppressed_and_never_sent(service: Service) -> None:
    uid = f"u-{uuid.uuid4().hex[:8]}"
    with service.client() as client:
        client.put(f"/v1/users/{uid}", json={"preferences": {"CM": {"email": False}}})
        answer = client.post("/v1/notifications", json=email_payload(uid=uid))
        assert answer.status_code == 202, answer.text
        tag = answer.json()["details"]["tag"]
        status = client.get(f"/v1/notifications/{tag}", params={"wait": 10}).json()
        assert (status["status"], status["reason"]) == ("suppressed", "preference")
        # The same user still gets a category left on.
        other = email_payload(uid=uid)
        other["type"] = "OTP_EMAIL"
        sent = client.post("/v1/notifications", json=other).json()["details"]["tag"]
        assert client.get(f"/v1/notifications/{sent}", params={"wait": 20}).json()["status"] == "sent"
    service.sink.wait_for_tag(sent)
    assert tag not in service.sink.handler.by_tag


def test_quiet_hours_hold_a_normal_message_and_let_asap_through(service: Service) -> None:
    uid = f"u-{uuid.uuid4().hex[:8]}"
    now = time.time()
    window = {"start": _hhmm(now - 3600), "end": _hhmm(now + 3600)}
    with service.client() as client:
        client.put(f"/v1/users/{uid}", json={"timezone": "UTC", "quiet_hours": window})
        normal_payload = email_payload(uid=uid)
        normal_payload["requester"]["asap"] = "no"  # the DESIGN.md payload is asap
        normal = client.post("/v1/notifications", json=normal_payload).json()
        urgent = client.post("/v1/notifications", json=email_payload(uid=uid)).json()
        held = client.get(f"/v1/notifications/{normal['details']['tag']}").json()
        assert held["status"] == "queued"
        assert now + 3000 < held["not_before"] <= now + 3660
        urgent_tag = urgent["details"]["tag"]
        assert client.get(f"/v1/notifications/{urgent_tag}", params={"wait": 20}).json()[
            "status"] == "sent"
        assert client.delete(f"/v1/notifications/{normal['details']['tag']}").status_code == 200
