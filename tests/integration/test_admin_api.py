"""The admin API against the session's running Herald: credentials, the overview and its stream,
search across tenants and shards, a notification's page, retry, cancel, pause and resume (a pause
survives a shard restart), the outbox and the analytics report."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from herald.sharding import shard_of_tag
from tests.conftest import ADMIN_KEY, KEYS, METRICS_TOKEN, Service
from tests.support.payloads import email_payload
from tests.support.probes import sent_beside
from tests.support.waiting import until

pytestmark = pytest.mark.ray

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ENDPOINTS = [
    ("GET", "/v1/admin/overview"), ("GET", "/v1/admin/notifications"),
    ("GET", "/v1/admin/notifications/00000000-0000-0000-0000-000000000000"),
    ("POST", "/v1/admin/notifications/retry"), ("POST", "/v1/admin/notifications/cancel"),
    ("POST", "/v1/admin/channels/email/pause"), ("POST", "/v1/admin/channels/email/resume"),
    ("GET", "/v1/admin/stream"), ("GET", "/v1/admin/outbox"), ("GET", "/v1/admin/analytics"),
    ("GET", "/v1/admin/report"),
]


def admin(service: Service, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=service.base_url, timeout=60.0, headers=ADMIN, **kwargs)


def post(service: Service, tenant: str = "tenant-a", **fields: Any) -> str:
    payload = email_payload(**fields.pop("payload", {}))
    payload["requester"].update(fields.pop("requester", {}))
    payload["details"].update(fields)
    with service.client(tenant) as client:
        response = client.post("/v1/notifications", json=payload)
    assert response.status_code == 202, response.text
    return str(response.json()["details"]["tag"])


def wait_status(client: httpx.Client, tag: str, wanted: set[str], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/admin/notifications/{tag}")
        if response.status_code == 200 and response.json()["status"] in wanted:
            return dict(response.json())
        assert time.monotonic() < deadline, f"{tag} never reached {wanted}: {response.text[:300]}"
        time.sleep(0.2)


@contextmanager
def paused(service: Service, channel: str = "email") -> Iterator[httpx.Client]:
    """``channel`` paused for the block, resumed whatever happens (the service is shared)."""
    with admin(service) as client:
        answer = client.post(f"/v1/admin/channels/{channel}/pause")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"channel": channel, "paused": True, "shards": 4}
        try:
            yield client
        finally:
            deadline = time.monotonic() + 60
            while client.post(f"/v1/admin/channels/{channel}/resume").status_code != 200:
                assert time.monotonic() < deadline, "could not resume"
                time.sleep(0.5)


# -- credentials ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_admin_endpoint_wants_the_admin_key(service: Service, method: str, path: str) -> None:
    with httpx.Client(base_url=service.base_url, timeout=30.0) as client:
        bare = client.request(method, path, json={"tags": ["x"]})
        assert bare.status_code == 401, bare.text
        assert bare.json()["error"]["code"] == "unauthorized"
        tenant = client.request(method, path, json={"tags": ["x"]},
                                headers={"Authorization": f"Bearer {KEYS['tenant-a']}"})
        assert tenant.status_code == 403, tenant.text
        assert tenant.json()["error"]["code"] == "forbidden"


def test_a_wrong_key_is_a_401_and_the_admin_key_is_no_tenant_key(service: Service) -> None:
    with httpx.Client(base_url=service.base_url, timeout=30.0) as client:
        wrong = client.get("/v1/admin/overview", headers={"Authorization": "Bearer nope-" + "n" * 20})
        assert wrong.status_code == 401
        assert client.post("/v1/notifications", json=email_payload(), headers=ADMIN).status_code == 401


def test_the_admin_key_is_an_operator_credential(service: Service) -> None:
    with admin(service) as client:
        assert len(client.get("/v1/queue").json()["shards"]) == 4
        text = client.get("/metrics").text
        assert "herald_channel_outcomes{" in text  # service-wide: actors included
        operator = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert operator.status_code == 200


def test_the_login_form_gets_a_strict_httponly_session_and_changes_need_its_csrf_token(
    service: Service,
) -> None:
    with httpx.Client(base_url=service.base_url, timeout=30.0) as browser:
        assert browser.get("/v1/admin/session").json()["authenticated"] is False
        assert browser.post("/v1/admin/session", json={"key": "nope-" + "n" * 20}).status_code == 401
        assert browser.post("/v1/admin/session", json={"key": KEYS["tenant-b"]}).status_code == 403
        assert browser.post("/v1/admin/session", json={}).status_code == 422
        login = browser.post("/v1/admin/session", json={"key": ADMIN_KEY})
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"]
        assert "herald_admin=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert ADMIN_KEY not in cookie
        csrf = login.json()["csrf"]
        session = browser.get("/v1/admin/session").json()
        assert session["authenticated"] is True and session["csrf"] == csrf
        assert browser.get("/v1/admin/overview").status_code == 200  # the cookie is a credential
        assert browser.post("/v1/admin/channels/fax/pause").status_code == 403  # no CSRF token
        wrong = browser.post("/v1/admin/channels/fax/pause", headers={"X-CSRF-Token": "x" * 43})
        assert wrong.status_code == 403
        elsewhere = browser.post("/v1/admin/channels/fax/pause", headers={
            "X-CSRF-Token": csrf, "Origin": "http://evil.example"})
        assert elsewhere.status_code == 403
        token = {"X-CSRF-Token": csrf}
        assert browser.post("/v1/admin/channels/fax/pause", headers=token).status_code == 200
        assert browser.post("/v1/admin/channels/fax/resume", headers=token).status_code == 200
        assert browser.delete("/v1/admin/session", headers={"X-CSRF-Token": csrf}).status_code == 204
        assert browser.get("/v1/admin/session").json()["authenticated"] is False
        assert browser.get("/v1/admin/overview").status_code == 401


# -- figures ---------------------------------------------------------------------------------------
def test_the_overview_has_every_figure(service: Service) -> None:
    post(service)
    with admin(service) as client:
        overview = client.get("/v1/admin/overview").json()
    assert set(overview["rates"]) >= {"incoming", "sent", "delivered", "failed"}
    assert set(overview["depth"]) == {"queued", "retrying", "sending"}
    assert {"oldest_queued_age", "retries_pending", "dead_letters", "paused", "history"} <= set(overview)
    email = next(c for c in overview["channels"] if c["channel"] == "email")
    assert email["pool"]["size"] == 2 and email["pool"]["running"] == 2
    assert isinstance(email["pool"]["open_circuits"], list) and email["paused"] is False
    assert [s["shard"] for s in overview["shards"]] == [0, 1, 2, 3]
    assert all(s["up"] for s in overview["shards"])
    assert overview["counters"]["accepted"] >= 1


def test_the_stream_sends_overviews_and_notable_events(service: Service) -> None:
    overviews: list[dict[str, Any]] = []
    notables: list[str] = []
    with admin(service) as client, client.stream("GET", "/v1/admin/stream") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name == "overview":
                overviews.append(json.loads(line[6:]))
                if len(overviews) == 1:  # an operator's action is a notable event
                    client.post("/v1/admin/notifications/cancel", json={"tags": [str(uuid.uuid4())]})
            elif line.startswith("data: ") and name == "notable":
                notables.append(json.loads(line[6:])["text"])
            if len(overviews) >= 2 and any(t.startswith("operator cancelled 0 of 1") for t in notables):
                break
    first, later = overviews[0], overviews[-1]
    assert {c["channel"] for c in first["channels"]} >= {"email", "sms", "fax", "browser"}
    assert len(later["history"]) == 1 and later["at"] > first["at"]  # then only the newest point


# -- search ----------------------------------------------------------------------------------------
def test_search_filters_across_tenants_and_pages_by_cursor(service: Service) -> None:
    service_name = "SVC_" + uuid.uuid4().hex[:8].upper()
    tags = [post(service, tenant, payload={"uid": f"adm-{i}"}, requester={"service": service_name})
            for i, tenant in enumerate(["tenant-a"] * 5 + ["tenant-b"] * 2)]
    assert len({shard_of_tag(t, 4) for t in tags}) > 1  # spread over shards
    with admin(service) as client:
        for tag in tags:
            wait_status(client, tag, {"sent"})
        found = client.get("/v1/admin/notifications", params={"service": service_name}).json()
        assert [i["tag"] for i in found["items"]] == tags[::-1] and found["next"] is None
        item = found["items"][0]
        assert item["tenant"] == "tenant-b" and item["recipient"] == "b…@example.com"
        assert item["service"] == service_name and item["status"] == "sent"
        only_b = client.get("/v1/admin/notifications", params={"service": service_name, "tenant": "tenant-b"})
        assert [i["tag"] for i in only_b.json()["items"]] == tags[:4:-1]
        for params in ({"uid": "adm-3"}, {"channel": "email", "status": "sent", "type": "cm_email"}):
            answer = client.get("/v1/admin/notifications", params={"service": service_name, **params})
            assert len(answer.json()["items"]) == (1 if "uid" in params else 7)
        assert client.get("/v1/admin/notifications", params={
            "service": service_name, "status": "dead,queued"}).json()["items"] == []
        first = found["items"][-1]["created_at"]
        since = client.get("/v1/admin/notifications", params={"service": service_name, "since": first + 1e-6})
        assert len(since.json()["items"]) == 6
        pages, cursor = [], None
        while True:
            params = {"service": service_name, "limit": 3} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/admin/notifications", params=params).json()
            pages.append([i["tag"] for i in page["items"]])
            cursor = page["next"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [t for p in pages for t in p] == tags[::-1]
        for params, field in (({"status": "lost"}, "status"), ({"limit": 0}, "limit"),
                              ({"cursor": "garbage!"}, "cursor"), ({"since": "soon"}, "since")):
            bad = client.get("/v1/admin/notifications", params=params)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field


def test_a_notification_page_has_masked_payload_rendered_content_and_attempts(service: Service) -> None:
    tag = post(service, "tenant-b", subject="Hi {user.name.first}")
    with admin(service) as client:
        page = wait_status(client, tag, {"sent"})
        assert page["tenant"] == "tenant-b" and page["uid"] == "76143021"
        assert page["payload"]["user"]["email"] == "b…@example.com"
        assert page["payload"]["user"]["name"]["first"] == "Bob"
        assert page["rendered"]["subject"] == "Hi Bob"
        assert page["rendered"]["text"] == "Hello Bob, your..."
        (attempt,) = page["history"]
        assert attempt["provider"] == "smtp" and attempt["outcome"] == "sent" and attempt["attempt"] == 1
        assert client.get(f"/v1/admin/notifications/{uuid.uuid4()}").status_code == 404
        assert client.get("/v1/admin/notifications/not-a-tag").status_code == 404


# -- actions ---------------------------------------------------------------------------------------
def test_retry_sends_a_dead_letter_again_one_result_per_tag(service: Service) -> None:
    address = f"dead-{uuid.uuid4().hex[:6]}@example.com"
    service.sink.handler.refuse[address] = "451 4.3.0 try again later"
    tag = post(service, payload={"to": address})
    sent = post(service)
    with admin(service) as client:
        dead = wait_status(client, tag, {"dead"})
        assert dead["attempts"] == 6
        wait_status(client, sent, {"sent"})
        del service.sink.handler.refuse[address]
        answer = client.post("/v1/admin/notifications/retry", json={"tags": [tag, "not-a-tag", sent]})
        assert answer.status_code == 200
        revived, unknown, done = answer.json()["results"]
        assert revived["tag"] == tag and revived["status"] == "queued" and "error" not in revived
        assert unknown["error"]["code"] == "not_found" and unknown["tag"] == "not-a-tag"
        assert done["error"]["code"] == "conflict"
        page = wait_status(client, tag, {"sent"})
        assert [h["outcome"] for h in page["history"]][-2:] == ["revived", "sent"]
        assert client.post("/v1/admin/notifications/retry", json={"tags": []}).status_code == 422


def test_pause_holds_email_until_resume_and_cancel_takes_a_queued_one(service: Service) -> None:
    with paused(service) as client:
        overview = client.get("/v1/admin/overview").json()
        assert "email" in overview["paused"]
        waiting, doomed = post(service), post(service, "tenant-b")
        sent_beside(service, waiting, "+14155553001")
        assert client.get(f"/v1/admin/notifications/{waiting}").json()["status"] == "queued"
        answer = client.post("/v1/admin/notifications/cancel", json={"tags": [doomed]})
        assert answer.json()["results"][0]["status"] == "cancelled"
        again = client.post("/v1/admin/notifications/cancel", json={"tags": [doomed]})
        assert again.json()["results"][0]["error"]["code"] == "conflict"
        assert client.post("/v1/admin/channels/webhook/pause").status_code == 404
        assert client.post("/v1/admin/channels/pigeon/resume").status_code == 404
    with admin(service) as client:
        assert wait_status(client, waiting, {"sent"}, 30)["status"] == "sent"
        assert "email" not in client.get("/v1/admin/overview").json()["paused"]


def test_a_pause_survives_a_shard_restart(service: Service) -> None:
    import ray

    shards = service.herald.supervisor.shard_handles().get()
    with paused(service) as client:
        tag = post(service)
        index = shard_of_tag(tag, 4)
        assert index is not None
        shard = shards[index]
        killed = shard.pid().get(timeout=30)
        ray.kill(shard.handle, no_restart=False)

        def restarted() -> bool:
            try:
                return shard.pid().get(timeout=10) != killed
            except ray.exceptions.RayError:  # dying, or not back yet
                return False

        until(restarted, f"shard {index} restarted", timeout=60, every=0.2)
        wait_status(client, tag, {"queued"}, 60)  # the shard is back, from its disk
        sent_beside(service, tag, "+14155553002")
        assert client.get(f"/v1/admin/notifications/{tag}").json()["status"] == "queued"
        assert "email" in client.get("/v1/admin/overview").json()["paused"]
    with admin(service) as client:
        assert wait_status(client, tag, {"sent"}, 60)["status"] == "sent"


# -- outbox, analytics, the page --------------------------------------------------------------------
def test_the_outbox_shows_captured_messages_masked(service: Service) -> None:
    from capture.outbox import append

    marker = uuid.uuid4().hex
    append(service.data_dir / "outbox", "sms", {"to": "+14155550100", "body": marker})
    with admin(service) as client:
        items = client.get("/v1/admin/outbox", params={"channel": "sms", "limit": 5}).json()["items"]
        assert items[0]["body"] == marker and items[0]["to"] == "+1…00"
        assert client.get("/v1/admin/outbox").status_code == 200
        assert client.get("/v1/admin/outbox", params={"channel": "pigeon"}).status_code == 422
        assert client.get("/v1/admin/outbox", params={"limit": 0}).status_code == 422


def test_the_latest_report_is_served_under_its_own_policy(service: Service) -> None:
    from analytics.report import build

    with admin(service) as client:
        if client.get("/v1/admin/analytics").json()["report"] is None:
            assert client.get("/v1/admin/report").status_code == 404
        _, html = build(service.data_dir, None, None, True, None)
        (service.data_dir / "analytics").mkdir(exist_ok=True)
        (service.data_dir / "analytics" / "report.html").write_text(html)
        latest = client.get("/v1/admin/analytics").json()["report"]
        assert latest["name"] == "report.html" and latest["url"] == "/v1/admin/report"
        report = client.get("/v1/admin/report")
    assert report.status_code == 200 and "<html" in report.text.lower()
    policy = report.headers["content-security-policy"]
    assert "'sha256-" in policy and "sandbox" in policy and "unsafe-inline" not in policy
    assert "script-src" not in policy  # default-src 'none': no script at all


def test_the_page_is_static_and_strict(service: Service) -> None:
    with httpx.Client(base_url=service.base_url, timeout=30.0) as client:
        page = client.get("/admin")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)  # no inline script
        assert not re.search(r"\son[a-z]+\s*=", page.text) and "style=" not in page.text
        script = client.get("/admin/static/admin.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert not re.search(r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write|eval\(",
                             script.text)  # data reaches the page as text only
        assert client.get("/admin/static/admin.css").status_code == 200
        assert client.get("/admin/static/secrets.txt").status_code == 404
        assert client.get("/admin/static/..%2Fapp.py").status_code == 404
        paths = client.get("/openapi.json").json()["paths"]
    assert paths["/v1/admin/overview"]["get"]["security"] == [{"bearerAuth": []}]
    assert "/admin" not in paths
