"""The browser channel over real WebSockets: offline users, reconnects, order, expiry, isolation."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.conftest import METRICS_TOKEN, Service
from tests.support.waiting import until

pytestmark = pytest.mark.ray


def notify(client: httpx.Client, uid: str, content: str, **details: Any) -> str:
    payload = {"type": "CM_BROWSER", "user": {"uid": uid},
               "details": {"title": "T", "content": content, **details}}
    response = client.post("/v1/notifications", json=payload)
    assert response.status_code == 202, response.text
    return str(response.json()["details"]["tag"])


def browser_parks(client: httpx.Client) -> float:
    """How many browser sends the gateways have parked (their user not connected), service-wide."""
    text = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "herald_channel_outcomes" for sample in family.samples
               if sample.labels["channel"].startswith("browser")
               and sample.labels["outcome"] == "park")


def endpoint(client: httpx.Client, uid: str) -> str:
    token = client.post("/v1/browser-tokens", json={"uid": uid}).json()["token"]
    return str(client.get("/v1/browser-endpoint", params={"token": token}).json()["url"])


async def receive(url: str, count: int, ack: bool = True, timeout: float = 30) -> list[dict]:
    frames: list[dict] = []
    async with websockets.connect(url) as ws:
        async with asyncio.timeout(timeout):
            while len(frames) < count:
                frame = json.loads(await ws.recv())
                if "tag" in frame:
                    frames.append(frame)
                    if ack:
                        await ws.send(json.dumps({"ack": frame["tag"]}))
        await asyncio.sleep(0.3 if ack else 0)  # let the acks reach the gateway
    return frames


def test_offline_user_gets_everything_in_order_on_connect(service: Service) -> None:
    uid = f"offline-{time.time()}"
    with service.client() as client:
        parked_before = browser_parks(client)
        tags = [notify(client, uid, f"message {i}") for i in range(5)]
        # They are leased, find nobody, and wait (parked): connect only once they have.
        until(lambda: browser_parks(client) >= parked_before + 5, "the five parked")
        assert {client.get(f"/v1/notifications/{t}").json()["status"] for t in tags} == {"queued"}
        frames = asyncio.run(receive(endpoint(client, uid), 5))
        assert [f["tag"] for f in frames] == tags
        assert [f["content"] for f in frames] == [f"message {i}" for i in range(5)]
        statuses = [client.get(f"/v1/notifications/{t}", params={"wait": 10}).json() for t in tags]
    assert all(s["status"] == "delivered" for s in statuses), statuses


def test_unacked_notification_comes_back_after_reconnect(service: Service) -> None:
    uid = f"flaky-{time.time()}"
    with service.client() as client:
        url = endpoint(client, uid)
        tag = notify(client, uid, "are you there?")
        first = asyncio.run(receive(url, 1, ack=False))  # drop the connection without acking
        assert first[0]["tag"] == tag
        again = asyncio.run(receive(url, 1))
        assert again[0]["tag"] == tag
        status = client.get(f"/v1/notifications/{tag}", params={"wait": 10}).json()
    assert status["status"] == "delivered"


def test_expired_browser_notification_fails_with_reason(service: Service) -> None:
    with service.client() as client:
        tag = notify(client, f"never-{time.time()}", "too late", ttl=1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = client.get(f"/v1/notifications/{tag}").json()
            if status["status"] == "failed":
                break
            time.sleep(0.2)
    assert status["status"] == "failed"
    assert status["history"][-1]["error"] == "expired"


def test_gateway_refuses_bad_tokens_and_isolates_tenants(service: Service) -> None:
    with service.client("tenant-a") as a, service.client("tenant-b") as b:
        url = endpoint(a, "shared-uid")
        with pytest.raises(InvalidStatus):
            asyncio.run(receive(url.replace("token=", "token=x"), 1, timeout=5))
        assert b.get("/v1/browser-endpoint", params={"token": "v1.nope.nope"}).status_code == 401
        tag_b = notify(b, "shared-uid", "for tenant b only")
        tag_a = notify(a, "shared-uid", "for tenant a")
        frames = asyncio.run(receive(url, 1))
    assert frames[0]["tag"] == tag_a and tag_b != tag_a
