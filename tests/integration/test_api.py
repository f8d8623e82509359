"""The HTTP API against a running Herald on the session's Ray, delivering to a real SMTP sink."""

from __future__ import annotations

import time

import pytest

from tests.conftest import MAX_WAITS, METRICS_TOKEN, Service
from tests.support.payloads import DESIGN_PAYLOAD, email_payload

pytestmark = pytest.mark.ray


def test_healthz_needs_no_key(service: Service) -> None:
    with service.client() as client:
        assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200


@pytest.mark.parametrize("path", ["/v1/queue", "/metrics", "/v1/notifications/x"])
def test_every_other_endpoint_needs_a_key(service: Service, path: str) -> None:
    with service.client() as client:
        response = client.get(path, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert client.get(path, headers={"Authorization": ""}).status_code == 401


def test_a_missing_credential_is_a_401_everywhere(service: Service) -> None:
    with service.client() as client:
        bare = {"Authorization": ""}
        for method, path in [("GET", "/v1/queue"), ("POST", "/v1/notifications"),
                             ("POST", "/v1/notifications/batch"), ("DELETE", "/v1/notifications/x"),
                             ("POST", "/v1/notifications/x/retry"), ("POST", "/v1/browser-tokens"),
                             ("GET", "/v1/browser-endpoint")]:
            response = client.request(method, path, headers=bare)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "unauthorized"


def test_openapi_describes_bodies_and_the_bearer_scheme(service: Service) -> None:
    with service.client() as client:
        document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    create = document["paths"]["/v1/notifications"]["post"]
    assert create["security"] == [{"bearerAuth": []}]
    body = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    notification = document["components"]["schemas"][body.rsplit("/", 1)[1]]
    assert {"type", "user", "details"} <= set(notification["required"])
    assert "User" in document["components"]["schemas"]  # nested models are described too
    batch = document["paths"]["/v1/notifications/batch"]["post"]["requestBody"]
    assert batch["content"]["application/json"]["schema"]["$ref"].endswith("/Batch")
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_email_is_delivered_and_status_reaches_sent(service: Service) -> None:
    with service.client() as client:
        response = client.post("/v1/notifications", json=email_payload(subject="Hi {user.name.first}"))
        assert response.status_code == 202, response.text
        details = response.json()["details"]
        assert isinstance(details["pos"], int) and details["pos"] >= 1
        status = client.get(f"/v1/notifications/{details['tag']}", params={"wait": 20}).json()
    assert status["status"] == "sent"
    assert status["history"][0]["provider"] == "smtp"
    mail = service.sink.wait_for_tag(details["tag"])
    assert mail["Subject"] == "Hi Bob"
    assert mail["To"] == "bob@example.com"
    assert mail["Message-ID"] == status["provider_id"]
    assert mail.get_body(("plain",)).get_content().strip() == "Hello Bob, your..."


def test_send_at_holds_a_notification_until_then_and_a_far_one_can_be_cancelled(
        service: Service) -> None:
    """Issue 20, 1: ``details.send_at`` over HTTP — queued with ``not_before`` until then, sent
    once after it; one due tomorrow (on disk only) cancelled and never sent."""
    due = time.time() + 3
    tomorrow = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 86400))
    with service.client() as client:
        soon = client.post("/v1/notifications", json=email_payload(send_at=due))
        later = client.post("/v1/notifications", json=email_payload(send_at=tomorrow))
        assert soon.status_code == 202 and later.status_code == 202, (soon.text, later.text)
        soon_tag, later_tag = soon.json()["details"]["tag"], later.json()["details"]["tag"]
        waiting = client.get(f"/v1/notifications/{soon_tag}").json()
        assert (waiting["status"], waiting["not_before"]) == ("queued", pytest.approx(due))
        assert client.get(f"/v1/notifications/{later_tag}").json()["status"] == "queued"
        assert client.delete(f"/v1/notifications/{later_tag}").status_code == 200
        status = client.get(f"/v1/notifications/{soon_tag}", params={"wait": 20}).json()
        assert status["status"] == "sent", status
        assert status["history"][0]["at"] >= due
        assert client.get(f"/v1/notifications/{later_tag}").json()["status"] == "cancelled"
    service.sink.wait_for_tag(soon_tag)
    assert service.sink.handler.by_tag[soon_tag] == 1
    assert later_tag not in service.sink.handler.by_tag


def test_repost_of_same_btag_returns_first_tag_and_sends_once(service: Service) -> None:
    payload = email_payload(btag="idem-" + str(time.time()))
    with service.client() as client:
        first = client.post("/v1/notifications", json=payload)
        second = client.post("/v1/notifications", json=payload)
        other_tenant = service.client("tenant-b").post("/v1/notifications", json=payload)
        assert first.status_code == 202 and second.status_code == 200
        tag = first.json()["details"]["tag"]
        assert second.json()["details"]["tag"] == tag
        assert other_tenant.status_code == 202
        assert other_tenant.json()["details"]["tag"] != tag
        client.get(f"/v1/notifications/{tag}", params={"wait": 20})
        service.sink.wait_for_tag(tag)
        # A later email of the same user (same shard, same lane) arrives: a second send of the
        # first would have come by then (instead of a fixed sleep that hopes so).
        later = client.post("/v1/notifications", json=email_payload()).json()["details"]["tag"]
    service.sink.wait_for_tag(later)
    assert service.sink.handler.by_tag[tag] == 1


def test_an_idempotency_key_header_works_as_the_btag(service: Service) -> None:
    key = "idem-header-" + str(time.time())
    payload = email_payload()
    payload["user"].pop("mq-uuid-btag")
    with service.client() as client:
        first = client.post("/v1/notifications", json=payload, headers={"Idempotency-Key": key})
        again = client.post("/v1/notifications", json=payload, headers={"Idempotency-Key": key})
        assert (first.status_code, again.status_code) == (202, 200), (first.text, again.text)
        assert again.json()["details"]["tag"] == first.json()["details"]["tag"]
        by_btag = client.post("/v1/notifications", json=email_payload(btag=key))
        assert by_btag.status_code == 200  # the same key, given the other way
        assert by_btag.json()["details"]["tag"] == first.json()["details"]["tag"]
        both = client.post("/v1/notifications", json=email_payload(btag="another"),
                           headers={"Idempotency-Key": key})
        assert both.status_code == 422 and both.json()["error"]["field"] == "Idempotency-Key"


def test_tenants_never_see_each_other(service: Service) -> None:
    with service.client("tenant-a") as a, service.client("tenant-b") as b:
        tag = a.post("/v1/notifications", json=email_payload()).json()["details"]["tag"]
        assert b.get(f"/v1/notifications/{tag}").status_code == 404
        assert b.delete(f"/v1/notifications/{tag}").status_code == 404
        assert a.get(f"/v1/notifications/{tag}").status_code == 200


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.update(type="CM_PIGEON"), "type"),
        (lambda p: p.pop("user"), "user"),
        (lambda p: p["details"].update(subject="Hi\r\nBcc: evil@example.com"), "details.subject"),
        (lambda p: p["user"].update(email="bob@example.com\r\nBcc: x@y.z"), "user.email"),
        (lambda p: p["details"].update(content="{nope}"), "details.content"),
        (lambda p: p["details"].update(content="{message|explode}"), "details.content"),
        (lambda p: p["requester"].update(priority=12), "requester.priority"),
        (lambda p: p["details"].update(send_at="2026-12-24T18:00:00"), "details.send_at"),
        (lambda p: p["details"].update(send_at=time.time() + 400 * 86400), "details.send_at"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(service: Service, mutate, field: str) -> None:
    payload = email_payload()
    mutate(payload)
    with service.client() as client:
        response = client.post("/v1/notifications", json=payload)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_not_json_and_oversized_bodies(service: Service) -> None:
    with service.client() as client:
        bad = client.post("/v1/notifications", content=b"{not json")
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "body"
        huge = client.post("/v1/notifications", content=b"x" * 2_000_000)
        assert huge.status_code == 413
        assert client.get("/v1/notifications/not-a-tag").status_code == 404
        assert client.get("/v1/notifications/x", params={"wait": "soon"}).status_code == 422


def test_batch_queues_valid_entries_and_reports_invalid_ones(service: Service) -> None:
    broken = email_payload()
    broken["details"]["content"] = "{missing}"
    notifications = [email_payload(), broken, dict(DESIGN_PAYLOAD, type="CM_EMAIL"), email_payload()]
    with service.client() as client:
        response = client.post("/v1/notifications/batch", json={"notifications": notifications})
        assert response.status_code == 202
        results = response.json()["results"]
        assert len(results) == 4
        assert "details" in results[0] and "details" in results[3]
        assert results[1]["error"]["field"] == "notifications.1.details.content"
        assert results[2]["error"]["field"].startswith("notifications.2.")
        for entry in (results[0], results[3]):
            status = client.get(f"/v1/notifications/{entry['details']['tag']}",
                                params={"wait": 20}).json()
            assert status["status"] == "sent"
        too_many = client.post("/v1/notifications/batch",
                               json={"notifications": [email_payload()] * 1001})
        assert too_many.status_code == 422


def test_transient_smtp_errors_are_retried_then_cancellable(service: Service) -> None:
    service.sink.handler.refuse["busy@example.com"] = "451 4.3.0 try again later"
    with service.client() as client:
        tag = client.post("/v1/notifications", json=email_payload(to="busy@example.com")).json()[
            "details"]["tag"]
        deadline = time.monotonic() + 30
        cancelled = None
        while time.monotonic() < deadline and cancelled is None:
            status = client.get(f"/v1/notifications/{tag}").json()
            if status["status"] == "retrying":
                response = client.delete(f"/v1/notifications/{tag}")
                if response.status_code == 200:
                    cancelled = response.json()
                else:
                    assert response.status_code == 409
            time.sleep(0.05)
        assert cancelled is not None and cancelled["status"] == "cancelled"
        history = cancelled["history"]
        assert history and all(h["outcome"] == "retry" and h["code"] == "451" for h in history)
        assert client.delete(f"/v1/notifications/{tag}").status_code == 409


def test_permanent_smtp_error_fails_without_retry(service: Service) -> None:
    service.sink.handler.refuse["nobody@example.com"] = "550 5.1.1 no such user"
    with service.client() as client:
        tag = client.post("/v1/notifications", json=email_payload(to="nobody@example.com")).json()[
            "details"]["tag"]
        status = client.get(f"/v1/notifications/{tag}", params={"wait": 20}).json()
    assert status["status"] == "failed"
    assert status["attempts"] == 1 and status["history"][0]["code"] == "550"
    # A 5xx at RCPT is a hard bounce in the session: the address is suppressed (issue 20, 4).
    with service.client() as client:
        deadline = time.monotonic() + 10
        while "nobody@example.com" not in {e["contact"] for e in
                                           client.get("/v1/suppressions").json()["items"]}:
            assert time.monotonic() < deadline, "the refused address was not suppressed"
            time.sleep(0.05)
        again = client.post("/v1/notifications", json=email_payload(to="nobody@example.com"))
        final = client.get(f"/v1/notifications/{again.json()['details']['tag']}",
                           params={"wait": 10}).json()
        assert (final["status"], final["reason"]) == ("suppressed", "bounced")
        assert client.delete("/v1/suppressions/nobody@example.com").status_code == 200


def test_queue_and_metrics_for_the_operator(service: Service) -> None:
    with service.client() as client:
        operator = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        queue = client.get("/v1/queue", headers=operator).json()
        assert len(queue["shards"]) == 4
        text = client.get("/metrics", headers=operator).text
    for name in ("# HELP herald_accepted_total", "herald_accepted_total", "herald_sent_total",
                 "herald_failed_total", "herald_retried_total",
                 "herald_delivery_latency_seconds_bucket", "herald_lease_expired_total",
                 "herald_duplicate_sends_total",
                 'herald_channel_outcomes{actor="0",channel="email",outcome="sent"}',
                 'herald_circuit_open{actor="0",provider="smtp"}'):
        assert name in text


def _accepted(text: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith("herald_accepted_total "))
    return float(line.split()[1])


def test_a_tenant_sees_only_its_own_figures(service: Service) -> None:
    """/metrics and /v1/queue are scoped to the caller's tenant; actors, circuits and restarts
    (service-wide) only to the operator credential."""
    with service.client("tenant-b") as client_b, service.client("tenant-a") as client_a:
        before_b = _accepted(client_b.get("/metrics").text)
        for _ in range(3):
            assert client_a.post("/v1/notifications", json=email_payload()).status_code == 202
        text_b = client_b.get("/metrics").text
        assert _accepted(text_b) == before_b  # tenant a's traffic is not b's to see
        assert _accepted(client_a.get("/metrics").text) >= 3
        assert "herald_channel_outcomes{" not in text_b and "herald_actor_restarts{" not in text_b
        assert len(client_b.get("/v1/queue").json()["shards"]) == 4


def test_dead_letter_can_be_retried_from_the_api(service: Service) -> None:
    service.sink.handler.refuse["dead@example.com"] = "451 4.3.0 try again later"
    with service.client() as client:
        tag = client.post("/v1/notifications", json=email_payload(to="dead@example.com")).json()[
            "details"]["tag"]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/notifications/{tag}").json()["status"] != "dead":
            assert time.monotonic() < deadline, "never reached dead"
            time.sleep(0.2)
        assert client.post(f"/v1/notifications/{email_payload()['user']['uid']}x/retry").status_code == 404
        del service.sink.handler.refuse["dead@example.com"]
        revived = client.post(f"/v1/notifications/{tag}/retry")
        assert revived.status_code == 202 and revived.json()["status"] == "queued"
        status = client.get(f"/v1/notifications/{tag}", params={"wait": 20}).json()
        assert status["status"] == "sent"
        assert client.post(f"/v1/notifications/{tag}/retry").status_code == 409


def test_one_tenants_waits_cannot_hold_every_slot(service: Service) -> None:
    """?wait holds are bounded per tenant: beyond the bound a 429, other tenants unaffected."""
    import concurrent.futures

    service.sink.handler.refuse["slow@example.com"] = "451 4.3.0 later"  # stays retrying
    with service.client("tenant-b") as client:
        tag = client.post("/v1/notifications", json=email_payload(to="slow@example.com")).json()[
            "details"]["tag"]
    def wait_once(_: int) -> int:
        with service.client("tenant-b") as client:
            return client.get(f"/v1/notifications/{tag}", params={"wait": 3}).status_code
    with concurrent.futures.ThreadPoolExecutor(MAX_WAITS + 4) as pool:
        codes = list(pool.map(wait_once, range(MAX_WAITS + 4)))
    assert codes.count(429) >= 1 and codes.count(200) >= MAX_WAITS - 2, codes
    with service.client("tenant-a") as client:  # another tenant still gets its answers
        assert client.get("/v1/queue").status_code == 200
    with service.client("tenant-b") as client:
        client.delete(f"/v1/notifications/{tag}")
