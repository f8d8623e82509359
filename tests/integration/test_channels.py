"""SMS, fax, failover, rate limits and requester callbacks against real loopback peers."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook

from tests.conftest import KEYS, Service
from tests.support.payloads import email_payload
from tests.support.waiting import until

pytestmark = pytest.mark.ray


def sms(to: str, uid: str = "sms-user", **details: Any) -> dict[str, Any]:
    return {"type": "OTP_SMS", "user": {"uid": uid, "name": {"first": "Ann"}},
            "requester": {"service": "AUTH"},
            "details": {"to": to, "content": "Hi {user.name.first}, your code is {code}",
                        "vars": {"code": "123456"}, "bill_to": "acct-42", **details}}


def wait_status(client: httpx.Client, tag: str, wanted: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(f"/v1/notifications/{tag}", params={"wait": 2}).json()
        if status["status"] in wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_sms_is_sent_through_twilio_then_delivered_by_status_callback(service: Service) -> None:
    with service.client() as client:
        response = client.post("/v1/notifications", json=sms("+14155550100"))
        assert response.status_code == 202, response.text
        tag = response.json()["details"]["tag"]
        status = wait_status(client, tag, {"delivered", "failed"})
    assert status["status"] == "delivered", status
    assert status["bill_to"] == "acct-42"
    sent = status["history"][0]
    assert sent["provider"] in ("twilio", "twilio-backup") and sent["outcome"] == "sent"
    assert sent["provider_id"].startswith("SM")
    assert sent["info"]["segments"] == 1
    assert status["history"][-1]["outcome"] == "delivered"
    bodies = [m["body"] for m in service.twilio.messages + service.twilio_backup.messages]
    assert "Hi Ann, your code is 123456" in bodies


def test_sms_rejects_non_e164_at_intake(service: Service) -> None:
    with service.client() as client:
        response = client.post("/v1/notifications", json=sms("0155 555"))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "details.to"


def test_unsubscribed_number_fails_with_twilio_code(service: Service) -> None:
    service.twilio.reject_numbers(["+14155550199"], code=21610)
    service.twilio_backup.reject_numbers(["+14155550199"], code=21610)
    with service.client() as client:
        tag = client.post("/v1/notifications", json=sms("+14155550199")).json()["details"]["tag"]
        status = wait_status(client, tag, {"failed"})
    assert status["status"] == "failed"
    assert status["attempts"] == 1 and status["history"][0]["code"] == "21610"
    # Twilio's 21610 is a STOP Herald never saw: the number is suppressed for that sender now
    # (issue 20, 4), on every shard, and the next message to it is never sent.
    with service.client() as client:
        deadline = time.monotonic() + 10
        while "+14155550199" not in [e["contact"] for e in
                                     client.get("/v1/suppressions").json()["items"]]:
            assert time.monotonic() < deadline, "21610 did not suppress the number"
            time.sleep(0.05)
        again = client.post("/v1/notifications", json=sms("+14155550199")).json()
        status = wait_status(client, again["details"]["tag"], {"suppressed"})
    assert (status["status"], status["reason"]) == ("suppressed", "stop")


def test_long_sms_reports_segments(service: Service) -> None:
    with service.client() as client:
        payload = sms("+14155550101", content="你" * 100)  # UCS-2: 100 > 70 → 2 segments
        tag = client.post("/v1/notifications", json=payload).json()["details"]["tag"]
        status = wait_status(client, tag, {"delivered", "failed"})
    assert status["history"][0]["info"]["segments"] == 2


def test_primary_sms_provider_503_fails_over_and_comes_back(service: Service) -> None:
    primary, backup = service.twilio, service.twilio_backup
    # Down until the test has seen the failover, not for a fixed time a slow box might outlast.
    primary.fail_until(time.monotonic() + 600, status=503)
    backup_before = len(backup.messages)
    try:
        with service.client() as client:
            tags = [client.post("/v1/notifications", json=sms(f"+1415555{1000 + i}", uid=f"f{i}"))
                    .json()["details"]["tag"] for i in range(30)]
            statuses = [wait_status(client, t, {"delivered", "failed", "dead"}, 60) for t in tags]
            assert all(s["status"] == "delivered" for s in statuses), statuses
            carried_by = {h["provider"] for s in statuses for h in s["history"]
                          if h["outcome"] == "sent"}
            assert "twilio-backup" in carried_by
            assert len(backup.messages) > backup_before
            assert any(h["outcome"] == "retry" and h["provider"] == "twilio"
                       and h["error"].startswith("Twilio 503") for s in statuses for h in s["history"])
            # Once the primary is healthy again, the breaker's probe succeeds and traffic returns.
            primary.fail_until(0.0)
            deadline = time.monotonic() + 30
            for n in range(1000):  # a number each: the per-recipient limit (3/60 s) stays out of it
                tag = client.post("/v1/notifications", json=sms(f"+1415555{2000 + n}", uid="back")
                                  ).json()["details"]["tag"]
                status = wait_status(client, tag, {"delivered", "failed"})
                if status["history"][0]["provider"] == "twilio":
                    break
                assert time.monotonic() < deadline, "traffic never returned to the primary provider"
                time.sleep(0.5)
    finally:
        primary.fail_until(0.0)  # the service is shared


def test_recipient_rate_limit_makes_messages_wait_not_fail(service: Service) -> None:
    with service.client() as client:
        tags = [client.post("/v1/notifications", json=sms("+14155550177", uid="rl")).json()[
            "details"]["tag"] for _ in range(5)]

        def settled() -> list[dict[str, Any]] | None:
            """The five once each is sent or held back by the limiter (queued again, with a time
            it is due): what is left in line untried is not yet an answer."""
            statuses = [client.get(f"/v1/notifications/{t}").json() for t in tags]
            if all(s["status"] in ("sent", "delivered", "failed", "dead")
                   or (s["status"] == "queued" and s["not_before"] is not None) for s in statuses):
                return statuses
            return None

        statuses = until(settled, "each of the five sent, failed or held back by the limit")
    done = [s for s in statuses if s["status"] in ("sent", "delivered")]
    waiting = [s for s in statuses if s["status"] == "queued"]
    assert len(done) == 3, statuses  # 3 per number per 60 s in the test configuration
    assert len(waiting) == 2 and all(s["attempts"] == 0 for s in waiting), statuses
    # Held for the rest of the window (not a retry's seconds): the limit, not a failed attempt.
    assert all(s["not_before"] - s["updated_at"] > 30 for s in waiting), statuses
    assert not [s for s in statuses if s["status"] in ("failed", "dead")]


def test_fax_renders_a_pdf_and_is_delivered_by_webhook(service: Service) -> None:
    payload = {"type": "DOC_FAX", "user": {"uid": "fax-user"},
               "details": {"to": "+14155550123", "title": "Invoice", "content": "Total: {total}",
                           "vars": {"total": "42 EUR"}}}
    with service.client() as client:
        tag = client.post("/v1/notifications", json=payload).json()["details"]["tag"]
        status = wait_status(client, tag, {"delivered", "failed"})
    assert status["status"] == "delivered", status
    assert status["history"][0]["provider"] == "telnyx"
    fax = next(f for f in service.fax.faxes if f["to"] == "+14155550123")
    assert fax.get("pdf") or fax.get("pages")


def test_requester_callback_is_signed_and_retried(service: Service) -> None:
    path = f"/hooks/{time.time()}"
    service.webhooks.fail_first[path] = 2
    payload = email_payload(requester={"service": "X", "callback_url": service.webhooks.base_url + path})
    payload["requester"] = {"service": "X", "callback_url": service.webhooks.base_url + path}
    with service.client() as client:
        tag = client.post("/v1/notifications", json=payload).json()["details"]["tag"]
    hits = service.webhooks.wait_for(path, count=3)
    final = hits[-1]
    body = orjson.loads(final["body"])
    assert body["tag"] == tag and body["status"] == "sent"
    with service.client() as client:
        answer = client.get("/v1/webhook-secret")
    assert answer.status_code == 200, answer.text
    secret = answer.json()["secret"]  # made by Herald for the tenant, never its API key
    assert secret.startswith("whsec_") and KEYS["tenant-a"] not in secret
    assert answer.json() == {"secret": secret, "previous": None, "previous_until": None}
    expected = hmac.new(secret.encode(), final["body"], hashlib.sha256).hexdigest()
    assert final["headers"]["X-Herald-Signature"] == expected
    Webhook(secret).verify(final["body"], final["headers"])
    with service.client("tenant-b") as client:
        other = client.get("/v1/webhook-secret").json()["secret"]
    assert other.startswith("whsec_") and other != secret

