"""The inbox feed in headless Chromium: the demo page lists the user's notifications newest first
with an unread badge; a click marks one read on the server, "Mark all read" the rest; herald.js
marks what it showed with ``readOnAck`` and asks its token function again on a 401."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_admin_page import TIMEOUT_MS, Console, console
from tests.browser.test_demo_page import mint_token, notify, open_demo
from tests.conftest import Service

__all__ = ["console"]  # the fixture: no console errors, no dialogs, a screenshot on failure

pytestmark = pytest.mark.browser


def server_feed(service: Service, uid: str) -> tuple[dict[str, bool], int]:
    """The user's feed as the tenant API tells it: read or not by tag, and the unread count."""
    with service.client("tenant-a") as client:
        response = client.get(f"/v1/users/{uid}/notifications", params={"limit": 100})
    assert response.status_code == 200, response.text
    body = response.json()
    return {item["tag"]: item["read"] for item in body["items"]}, body["unread"]


def open_harness(service: Service, console: Console) -> None:
    """The demo page without a token: it only offers to sign in, and has loaded herald.js."""
    console.page.goto(f"{service.base_url}/demo")
    expect(console.page.locator("#herald-login")).to_be_visible()


def test_the_feed_shows_unread_and_clicks_mark_read_on_the_server(
    service: Service, console: Console
) -> None:
    uid, page = "feed-1", console.page
    tags = [notify(service, uid, content=f"number {n}") for n in range(3)]
    open_demo(service, page, uid)
    items, badge = page.locator(".herald-item"), page.locator("#herald-unread")
    expect(items).to_have_count(3, timeout=TIMEOUT_MS)
    expect(badge).to_have_text("3")
    assert items.evaluate_all("els => els.map(e => e.dataset.tag)") == tags[::-1]
    expect(page.locator(f'.herald-item[data-tag="{tags[0]}"]')).to_contain_text("number 0")

    clicked = page.locator(f'.herald-item[data-tag="{tags[1]}"]')
    clicked.click()
    expect(clicked).to_have_attribute("data-read", "true")
    expect(badge).to_have_text("2")
    assert server_feed(service, uid) == ({tags[0]: False, tags[1]: True, tags[2]: False}, 2)

    page.click("#herald-read-all")
    expect(page.locator('.herald-item[data-read="false"]')).to_have_count(0)
    expect(badge).to_have_text("0")
    assert server_feed(service, uid) == (dict.fromkeys(tags, True), 0)

    late = notify(service, uid, content="late")  # arrives over the socket: the list follows
    expect(page.locator(f'.herald-item[data-tag="{late}"]')).to_have_attribute(
        "data-read", "false", timeout=TIMEOUT_MS)
    expect(badge).to_have_text("1")


def test_read_on_ack_marks_what_was_shown_and_not_what_failed(
    service: Service, console: Console
) -> None:
    uid, page = "feed-ack", console.page
    console.expected.append("Herald onNotification failed")  # the throwing handler, logged
    open_harness(service, console)
    page.evaluate("""token => {
        window.shown = []; window.unread = [];
        Herald.connect({token: token, readOnAck: true,
          onNotification: frame => {
            window.shown.push(frame.tag);
            if (frame.content === "boom") throw new Error("boom");
          },
          onUnread: count => { window.unread.push(count); }});
    }""", mint_token(service, uid))
    failing = notify(service, uid, content="boom")
    shown = notify(service, uid, content="fine")
    page.wait_for_function("tags => tags.every(t => window.shown.includes(t))",
                           arg=[failing, shown], timeout=TIMEOUT_MS)
    page.wait_for_function("() => window.unread.length > 0", timeout=TIMEOUT_MS)
    assert page.evaluate("window.unread") == [1]
    assert server_feed(service, uid) == ({failing: False, shown: True}, 1)


def test_feed_calls_refresh_a_refused_token_once_and_carry_the_servers_error(
    service: Service, console: Console
) -> None:
    uid, page = "feed-token", console.page
    tag = notify(service, uid)
    console.expected.append("status of 401")  # the browser logs each refused request
    console.expected.append("status of 422")
    open_harness(service, console)
    answer: dict[str, Any] = page.evaluate("""async token => {
        const given = ["not-a-token", token];
        let asked = 0, stopped;
        const unauthorized = new Promise(resolve => { stopped = resolve; });
        // The socket takes the first token, is refused and stops; the feed then holds it.
        const conn = Herald.connect({token: () => given[Math.min(asked++, 1)],
                                     onStatus: s => { if (s === "unauthorized") stopped(); }});
        await unauthorized;
        const page = await conn.feed({limit: 5});
        const askedForFeed = asked;
        const failure = err => ({status: err.status, field: err.field});
        const badLimit = await conn.feed({limit: 0}).then(() => null, failure);
        const fixed = Herald.connect({token: "not-a-token"});
        const refused = await fixed.feed().then(() => null, failure);
        fixed.close();
        return {asked: askedForFeed, tags: page.items.map(i => i.tag), unread: page.unread,
                badLimit, refused};
    }""", mint_token(service, uid))
    assert answer == {"asked": 2, "tags": [tag], "unread": 1,
                      "badLimit": {"status": 422, "field": "limit"},
                      "refused": {"status": 401, "field": None}}
