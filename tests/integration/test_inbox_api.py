"""The inbox feed over HTTP (issue 20, 5), against a running Herald: a user's browser
notifications and the others sent with ``details.inbox``, newest first in pages, the unread
count, marking read by tag or all — with the tenant's key and with the user's browser token;
one tenant never sees another's, and mistakes are 4xx naming the field."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.conftest import Service
from tests.integration.test_browser_gateway import endpoint, notify, receive
from tests.support.payloads import email_payload

pytestmark = pytest.mark.ray


def test_the_feed_lists_counts_pages_and_marks_read(service: Service) -> None:
    uid = f"feed-{uuid.uuid4().hex[:8]}"
    with service.client() as client:
        browser = [notify(client, uid, f"message {i}") for i in range(3)]
        kept_mail = email_payload(uid=uid)
        kept_mail["details"]["inbox"] = True
        mail = client.post("/v1/notifications", json=kept_mail).json()["details"]["tag"]
        assert client.post("/v1/notifications", json=email_payload(uid=uid)).status_code == 202
        newest_first = [mail, *reversed(browser)]

        whole = client.get(f"/v1/users/{uid}/notifications").json()
        assert [i["tag"] for i in whole["items"]] == newest_first
        assert whole["unread"] == 4 and whole["next"] is None
        assert whole["items"][-1]["content"] == "message 0" and not whole["items"][-1]["read"]
        first = client.get(f"/v1/users/{uid}/notifications", params={"limit": 3}).json()
        rest = client.get(f"/v1/users/{uid}/notifications",
                          params={"limit": 3, "cursor": first["next"]}).json()
        assert [i["tag"] for i in first["items"] + rest["items"]] == newest_first
        assert rest["next"] is None

        token = client.post("/v1/browser-tokens", json={"uid": uid}).json()["token"]
        mine = client.get("/v1/browser/notifications", params={"token": token}).json()
        assert mine == whole
        marked = client.post("/v1/browser/notifications/read", params={"token": token},
                             json={"tags": [browser[0]]})
        assert marked.status_code == 200 and marked.json() == {"read": 1, "unread": 3}
        unread = client.get(f"/v1/users/{uid}/notifications", params={"unread": "true"}).json()
        assert [i["tag"] for i in unread["items"]] == newest_first[:3]
        assert client.post(f"/v1/users/{uid}/notifications/read",
                           json={"all": True}).json() == {"read": 3, "unread": 0}


def test_delivered_is_not_read_and_tenants_are_apart(service: Service) -> None:
    uid = f"feed-{uuid.uuid4().hex[:8]}"
    with service.client() as client, service.client("tenant-b") as other:
        tag = notify(client, uid, "hello")
        frames = asyncio.run(receive(endpoint(client, uid), 1))
        assert frames[0]["tag"] == tag
        assert client.get(f"/v1/notifications/{tag}", params={"wait": 10}).json()[
            "status"] == "delivered"
        [item] = client.get(f"/v1/users/{uid}/notifications").json()["items"]
        assert (item["status"], item["read"]) == ("delivered", False)
        assert other.get(f"/v1/users/{uid}/notifications").json() == {
            "items": [], "unread": 0, "next": None}
        assert other.post(f"/v1/users/{uid}/notifications/read",
                          json={"tags": [tag]}).json() == {"read": 0, "unread": 0}
        assert client.get(f"/v1/users/{uid}/notifications").json()["unread"] == 1


@pytest.mark.parametrize(("method", "path", "params", "body", "status", "field"), [
    ("GET", "/v1/users/u/notifications", {"limit": "0"}, None, 422, "limit"),
    ("GET", "/v1/users/u/notifications", {"unread": "perhaps"}, None, 422, "unread"),
    ("GET", "/v1/users/u/notifications", {"cursor": "zz"}, None, 422, "cursor"),
    ("POST", "/v1/users/u/notifications/read", {}, {"tags": []}, 422, "tags"),
    ("POST", "/v1/users/u/notifications/read", {}, {"all": False}, 422, "all"),
    ("GET", "/v1/browser/notifications", {}, None, 401, None),
    ("GET", "/v1/browser/notifications", {"token": "forged"}, None, 401, None),
    ("POST", "/v1/browser/notifications/read", {"token": "forged"}, {"all": True}, 401, None),
])
def test_mistakes_are_answered_with_4xx(service: Service, method: str, path: str,
                                        params: dict[str, str], body: object, status: int,
                                        field: str | None) -> None:
    with service.client() as client:
        answer = client.request(method, path, params=params, json=body)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"].get("field") == field
        keyless = client.get("/v1/users/u/notifications", headers={"Authorization": ""})
        assert keyless.status_code == 401
