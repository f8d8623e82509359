"""Intake's guards against the session's running Herald, over real HTTP from chosen loopback
addresses: one throttle of wrong operator/admin keys per client address, on every endpoint
that takes one; logout ends the session server-side; unauthenticated bodies are capped; a dead
actor is a 503 (not a bug's 500)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from actors.clients import Call
from herald.admin_session import SESSION_SECONDS
from serve.answers import install_error_handlers
from serve.auth import UNAUTHENTICATED_BODY_LIMIT
from tests.conftest import ADMIN_KEY, Service
from tests.support.loopback_app import served

pytestmark = pytest.mark.ray

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LIMIT = 20  # wrong keys a minute from one address (LoginThrottle's default)


def client_from(service: Service, address: str, **kwargs: Any) -> httpx.Client:
    """An HTTP client whose connections come from ``address`` (another loopback address)."""
    return httpx.Client(base_url=service.base_url, timeout=30.0,
                        transport=httpx.HTTPTransport(local_address=address), **kwargs)


def test_wrong_keys_on_metrics_queue_and_login_share_one_throttle_per_address(
    service: Service,
) -> None:
    with client_from(service, "127.0.0.3") as guesser:
        for i in range(LIMIT):
            wrong = {"Authorization": f"Bearer guess-{i:04d}-" + "g" * 20}
            answer = (guesser.get("/metrics", headers=wrong) if i % 3 == 0 else
                      guesser.get("/v1/queue", headers=wrong) if i % 3 == 1 else
                      guesser.post("/v1/admin/session", json={"key": f"guess-{i:04d}"}))
            assert answer.status_code == 401, (i, answer.text)
        # The window is used up for this address: even the right key is refused, everywhere.
        for locked in (guesser.get("/metrics", headers=ADMIN),
                       guesser.get("/v1/queue", headers=ADMIN),
                       guesser.get("/v1/admin/overview", headers=ADMIN),
                       guesser.post("/v1/admin/session", json={"key": ADMIN_KEY})):
            assert locked.status_code == 429, locked.text
            assert locked.json()["error"]["code"] == "too_many_requests"
            assert locked.json()["error"]["field"] is None
            assert 1 <= int(locked.headers["retry-after"]) <= 60
    with client_from(service, "127.0.0.2") as admin:  # another address is not locked out
        assert admin.get("/metrics", headers=ADMIN).status_code == 200
        assert admin.get("/v1/queue", headers=ADMIN).status_code == 200
        assert admin.post("/v1/admin/session", json={"key": ADMIN_KEY}).status_code == 200


def test_logout_ends_the_session_for_its_old_cookie_too(service: Service) -> None:
    with client_from(service, "127.0.0.2") as browser:
        login = browser.post("/v1/admin/session", json={"key": ADMIN_KEY})
        assert login.status_code == 200, login.text
        cookie = browser.cookies["herald_admin"]
        assert browser.get("/v1/admin/overview").status_code == 200
        assert browser.delete("/v1/admin/session",
                              headers={"X-CSRF-Token": login.json()["csrf"]}).status_code == 204
    with client_from(service, "127.0.0.2") as replay:  # someone who kept the cookie
        replay.cookies.set("herald_admin", cookie)
        refused = replay.get("/v1/admin/overview")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "unauthorized"
        assert replay.get("/v1/admin/session").json()["authenticated"] is False
        assert SESSION_SECONDS > 3600  # (so the refusal above was not the session's expiry)


BIG = 64 * 1024
UNAUTHENTICATED = ["/v1/admin/session", "/v1/providers/twilio/status", "/v1/providers/fax/status"]


@pytest.mark.parametrize("path", UNAUTHENTICATED)
def test_an_unauthenticated_body_over_the_cap_is_a_413(service: Service, path: str) -> None:
    assert UNAUTHENTICATED_BODY_LIMIT < BIG
    body = b'{"key": "' + b"k" * (BIG - 11) + b'"}'
    with client_from(service, "127.0.0.4") as client:
        declared = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413, declared.text
        assert declared.json()["error"]["code"] == "too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: read until past the cap
            for start in range(0, BIG, 4096):
                yield body[start:start + 4096]

        chunked = client.post(path, content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413, chunked.text
        assert chunked.json()["error"]["code"] == "too_large"


def test_a_normal_login_fits_under_the_cap(service: Service) -> None:
    with client_from(service, "127.0.0.4") as client:
        assert client.post("/v1/admin/session", json={"key": ADMIN_KEY}).status_code == 200


def test_a_dead_actor_is_a_503_with_retry_after(ray_session: None) -> None:
    import ray

    @ray.remote(num_cpus=0)
    class Shard:
        def ping(self) -> str:
            return "pong"

    shard = Shard.remote()  # type: ignore[attr-defined]
    assert ray.get(shard.ping.remote()) == "pong"
    ray.kill(shard, no_restart=True)
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/ping")
    async def ping() -> Any:
        return await Call[str](shard.ping.remote())

    with served(app) as url:
        answer = httpx.get(f"{url}/ping", timeout=60.0)
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "unavailable"
    assert int(answer.headers["retry-after"]) >= 1
