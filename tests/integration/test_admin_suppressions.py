"""The admin API over suppressed contacts (issue 20, 4 and 7), against the session's Herald: the
admin key or a session with its CSRF token, never a tenant's key; a tenant's list with every
tenant's SMS STOPs marked, contacts masked; adding one, lifting one by its id on every shard."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import ADMIN_KEY, KEYS, TWILIO_TOKEN, Service
from tests.support.payloads import email_payload

pytestmark = pytest.mark.ray

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PATH = "/v1/admin/suppressions"
SENDER = "+15005550006"  # the service's HERALD_TWILIO_FROM


def admin(service: Service) -> httpx.Client:
    return httpx.Client(base_url=service.base_url, timeout=60.0, headers=ADMIN)


def rows(client: httpx.Client, tenant: str, **params: str) -> list[dict[str, Any]]:
    answer = client.get(PATH, params={"tenant": tenant, **params})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def final(client: httpx.Client, tag: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/v1/notifications/{tag}", params={"wait": 20}).json()
    return answer


def test_a_tenants_key_cannot_and_the_admin_key_can(service: Service) -> None:
    address = f"adm-{uuid.uuid4().hex[:6]}@example.com"
    tenant = {"Authorization": f"Bearer {KEYS['tenant-a']}"}
    with httpx.Client(base_url=service.base_url, timeout=60.0) as anyone:
        for method, params, body in (("GET", {"tenant": "tenant-a"}, None),
                                     ("POST", None, {"tenant": "tenant-a", "contact": address}),
                                     ("DELETE", {"tenant": "tenant-a", "contact": address}, None)):
            assert anyone.request(method, PATH, params=params, json=body).status_code == 401
            refused = anyone.request(method, PATH, params=params, json=body, headers=tenant)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    with admin(service) as client:
        assert address not in str(rows(client, "tenant-a"))
        added = client.post(PATH, json={"tenant": "tenant-a", "contact": address.upper()})
        assert added.status_code == 201, added.text
        assert address not in added.text  # masked, even in the answer to the one who typed it
        assert added.json()["contact"] == f"{address[0]}…@example.com"
        assert added.json()["reason"] == "manual" and added.json()["every_tenant"] is False
        assert rows(client, "tenant-a", contact=address) == [added.json()]
        assert rows(client, "tenant-b", contact=address) == []


def test_an_entry_added_by_an_operator_holds_on_every_shard_until_lifted_by_its_id(
        service: Service) -> None:
    address = f"op-{uuid.uuid4().hex[:6]}@example.com"
    with admin(service) as client, service.client("tenant-a") as a:
        entry = client.post(PATH, json={"tenant": "tenant-a", "contact": address}).json()
        again = client.post(PATH, json={"tenant": "tenant-a", "contact": address})
        assert again.status_code == 200 and again.json() == entry  # already there: unchanged
        # The tenant's own view: the entry as it is, so every shard's copy has it.
        assert address in [e["contact"] for e in a.get("/v1/suppressions").json()["items"]]
        tags = [a.post("/v1/notifications", json=email_payload(to=address)).json()["details"]["tag"]
                for _ in range(4)]  # several users: several shards
        for tag in tags:
            status = final(a, tag)
            assert (status["status"], status["reason"]) == ("suppressed", "manual")
        lifted = client.delete(PATH, params={"tenant": "tenant-a", "id": entry["id"]})
        assert lifted.status_code == 200, lifted.text
        assert lifted.json() == {"lifted": 1, "every_tenant": False}
        assert client.delete(PATH, params={"tenant": "tenant-a", "id": entry["id"]}).status_code == 404
        assert rows(client, "tenant-a", contact=address) == []
        sent = a.post("/v1/notifications", json=email_payload(to=address)).json()["details"]["tag"]
        assert final(a, sent)["status"] == "sent"


def test_by_contact_lifts_the_tenants_own_entries_and_answers_404_after(service: Service) -> None:
    number = f"+1415556{uuid.uuid4().int % 10_000:04d}"
    with admin(service) as client:
        assert client.post(PATH, json={"tenant": "tenant-b", "contact": number}).status_code == 201
        one = client.delete(PATH, params={"tenant": "tenant-b", "contact": number})
        assert one.status_code == 200 and one.json()["lifted"] == 1
        gone = client.delete(PATH, params={"tenant": "tenant-b", "contact": number})
        assert gone.status_code == 404 and number not in gone.text


def test_every_tenants_stop_is_listed_for_each_tenant_and_lifted_for_all(service: Service) -> None:
    number = f"+1415557{uuid.uuid4().int % 10_000:04d}"
    url = service.herald.settings.base_url() + "/v1/providers/twilio/inbound"
    form = {"From": number, "To": SENDER, "Body": "STOP", "MessageSid": "SM" + "1" * 32}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
    with httpx.Client(base_url=service.base_url, timeout=60.0) as twilio:
        stop = twilio.post("/v1/providers/twilio/inbound", data=form,
                           headers={"X-Twilio-Signature": signature})
        assert stop.status_code == 200, stop.text
    with admin(service) as client, service.client("tenant-b") as b:
        listed = {tenant: rows(client, tenant, contact=number) for tenant in ("tenant-a", "tenant-b")}
        for found in listed.values():
            assert len(found) == 1 and found[0]["every_tenant"] is True
            assert (found[0]["reason"], found[0]["sender"]) == ("stop", SENDER)
            assert found[0]["contact"] == "+1…" + number[-2:]
        assert listed["tenant-a"][0]["id"] == listed["tenant-b"][0]["id"]
        lifted = client.delete(PATH, params={"tenant": "tenant-b", "id": listed["tenant-b"][0]["id"]})
        assert lifted.json() == {"lifted": 1, "every_tenant": True}
        assert rows(client, "tenant-a", contact=number) == []
        assert number not in [e["contact"] for e in b.get("/v1/suppressions").json()["items"]]


def test_what_is_refused(service: Service) -> None:
    with admin(service) as client:
        for params in ({}, {"tenant": ""}, {"tenant": "*"}, {"tenant": "tenant-a", "limit": "0"}):
            answer = client.get(PATH, params=params)
            assert answer.status_code == 422, (params, answer.text)
        for body in ({"contact": "bob@example.com"}, {"tenant": "*", "contact": "bob@example.com"},
                     {"tenant": "nobody-" + uuid.uuid4().hex[:6], "contact": "bob@example.com"}):
            answer = client.post(PATH, json=body)
            assert answer.status_code == 422 and answer.json()["error"]["field"] == "tenant", body
        bad = client.post(PATH, json={"tenant": "tenant-a", "contact": "not a contact"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "contact"
        for params in ({"tenant": "tenant-a"}, {"tenant": "tenant-a", "id": "x", "contact": "y@z.org"}):
            assert client.delete(PATH, params=params).status_code == 422
        unknown = client.delete(PATH, params={"tenant": "tenant-a", "id": "é" + "A" * 21})
        assert unknown.status_code == 404


def test_a_session_needs_its_csrf_token_and_the_actions_are_notable(service: Service) -> None:
    domain = f"{uuid.uuid4().hex[:8]}.example.org"  # masking keeps it: these events are ours
    address, masked = f"csrf@{domain}", f"c…@{domain}"
    body = {"tenant": "tenant-a", "contact": address}
    with httpx.Client(base_url=service.base_url, timeout=60.0) as browser:
        csrf = browser.post("/v1/admin/session", json={"key": ADMIN_KEY}).json()["csrf"]
        assert browser.get(PATH, params={"tenant": "tenant-a"}).status_code == 200  # reads: cookie
        assert browser.post(PATH, json=body).status_code == 403
        assert browser.post(PATH, json=body, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
        assert browser.post(PATH, json=body, headers={
            "X-CSRF-Token": csrf, "Origin": "http://evil.example"}).status_code == 403
        notables: list[str] = []
        with browser.stream("GET", "/v1/admin/stream") as stream:
            name, acted = None, False
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "overview" and not acted:
                    acted = True
                    added = browser.post(PATH, json=body, headers={"X-CSRF-Token": csrf})
                    assert added.status_code == 201, added.text
                    entry = {"tenant": "tenant-a", "id": added.json()["id"]}
                    assert browser.delete(PATH, params=entry).status_code == 403
                    lifted = browser.delete(PATH, params=entry, headers={"X-CSRF-Token": csrf})
                    assert lifted.status_code == 200, lifted.text
                elif line.startswith("data: ") and name == "notable":
                    notables.append(json.loads(line[6:])["text"])
                if any(t.startswith("operator lifted") and domain in t for t in notables):
                    break
    assert f"operator suppressed {masked} for tenant-a" in notables
    assert f"operator lifted the suppression of {masked} for tenant-a" in notables
    assert address not in str(notables)
