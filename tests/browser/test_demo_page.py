"""The demo page in headless Chromium: notifications become toasts; the browser's ack delivers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

#: Generous: the first notification of a session may wait for Ray workers and a lease.
TIMEOUT_MS = 30_000


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context per test: closing it takes the user offline."""
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def mint_token(service: Any, uid: str) -> str:
    with service.client("tenant-a") as client:
        response = client.post("/v1/browser-tokens", json={"uid": uid})
    assert response.is_success, response.text
    body = response.json()
    assert body["expires_at"] > 0
    return str(body["token"])


def notify(service: Any, uid: str, content: str = "Hi {user.uid}") -> str:
    payload = {"type": "CM_BROWSER", "user": {"uid": uid},
               "details": {"title": "Hello", "content": content}}
    with service.client("tenant-a") as client:
        response = client.post("/v1/notifications", json=payload)
    assert response.status_code == 202, response.text
    return str(response.json()["details"]["tag"])


def final_status(service: Any, tag: str) -> str:
    with service.client("tenant-a") as client:
        response = client.get(f"/v1/notifications/{tag}", params={"wait": 20})
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def open_demo(service: Any, page: Page, uid: str) -> None:
    page.goto(f"{service.base_url}/demo?token={mint_token(service, uid)}")
    expect(page.locator("#herald-status")).to_have_text("connected", timeout=TIMEOUT_MS)


def test_notification_becomes_a_toast_and_the_ack_delivers_it(service: Any, page: Page) -> None:
    open_demo(service, page, "u-1")
    tag = notify(service, "u-1")
    toast = page.locator(f'.herald-toast[data-tag="{tag}"]')
    expect(toast).to_contain_text("Hi u-1", timeout=TIMEOUT_MS)
    expect(toast).to_contain_text("Hello")
    assert final_status(service, tag) == "delivered"


def test_notification_sent_while_offline_arrives_on_connect(service: Any, page: Page) -> None:
    tag = notify(service, "u-2")  # no page open for u-2: the gateway parks it
    open_demo(service, page, "u-2")
    expect(page.locator(f'.herald-toast[data-tag="{tag}"]')).to_contain_text(
        "Hi u-2", timeout=TIMEOUT_MS
    )
    assert final_status(service, tag) == "delivered"


def test_notification_markup_is_shown_as_text(service: Any, page: Page) -> None:
    open_demo(service, page, "u-3")
    markup = "<img src=x onerror=\"document.title='owned'\"> {user.uid}"
    tag = notify(service, "u-3", content=markup)
    toast = page.locator(f'.herald-toast[data-tag="{tag}"]')
    expect(toast).to_contain_text("<img src=x", timeout=TIMEOUT_MS)
    assert toast.locator("img").count() == 0
    assert page.title() != "owned"
