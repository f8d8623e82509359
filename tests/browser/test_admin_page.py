"""The admin console in headless Chromium: log in, watch notifications arrive live, open one,
retry a dead one, pause and resume email, and see hostile payloads shown as text.

Every test fails on a console error, an uncaught page error or a dialog, and saves a screenshot
of the page as ``failure.png`` in its tmp dir when it fails.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, expect

from tests.conftest import ADMIN_KEY, Service
from tests.support.payloads import email_payload
from tests.support.probes import sent_beside

pytestmark = pytest.mark.browser

#: Generous: the first notification of a session may wait for Ray workers and a lease.
TIMEOUT_MS = 30_000
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Console:
    """A page and what went wrong on it: console errors and warnings, page errors, dialogs."""

    page: Page
    problems: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    #: Console messages a test expects (e.g. the 401 of a refused login), by substring.
    expected: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(e in p for e in self.expected)]


@pytest.fixture
def console(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Console]:
    """A fresh context per test; after it: no unexpected console output, no dialog, and a
    screenshot in the test's tmp dir if it failed."""
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    watched = Console(context.new_page())

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            watched.problems.append(f"console {message.type}: {message.text}")

    def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    watched.page.on("console", on_console)
    watched.page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    watched.page.on("dialog", on_dialog)
    failed_before = request.session.testsfailed
    yield watched
    if request.session.testsfailed > failed_before:
        watched.page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
    context.close()
    assert not watched.unexpected(), watched.unexpected()
    assert not watched.dialogs, watched.dialogs


def log_in(service: Service, page: Page) -> None:
    page.goto(f"{service.base_url}/admin")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#login-key", ADMIN_KEY)
    page.click("#login-submit")
    expect(page.locator("#app")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("#live")).to_have_text("live", timeout=TIMEOUT_MS)


def post(service: Service, **details: Any) -> str:
    payload = email_payload(to=details.pop("to", "bob@example.com"))
    payload["details"].update(details)
    with service.client("tenant-a") as client:
        response = client.post("/v1/notifications", json=payload)
    assert response.status_code == 202, response.text
    return str(response.json()["details"]["tag"])


def api_status(service: Service, tag: str) -> str:
    with httpx.Client(base_url=service.base_url, headers=ADMIN, timeout=30) as client:
        return str(client.get(f"/v1/admin/notifications/{tag}").json()["status"])


def wait_api_status(service: Service, tag: str, wanted: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while api_status(service, tag) != wanted:
        assert time.monotonic() < deadline, f"{tag} never became {wanted}"
        time.sleep(0.2)


def row(page: Page, tag: str) -> Any:
    return page.locator(f'#rows tr[data-tag="{tag}"]')


# -- tests ------------------------------------------------------------------------------------------
def test_a_wrong_admin_key_is_refused(service: Service, console: Console) -> None:
    page = console.page
    console.expected.append("401 (Unauthorized)")  # the refused login's own answer
    page.goto(f"{service.base_url}/admin")
    page.fill("#login-key", "not-the-admin-key-" + "x" * 10)
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("That is not the admin key.")
    expect(page.locator("#app")).to_be_hidden()
    assert not [c for c in page.context.cookies() if c["name"] == "herald_admin"]


def test_log_in_and_a_new_notification_appears_without_reload(service: Service, console: Console) -> None:
    page = console.page
    log_in(service, page)
    cookie = next(c for c in page.context.cookies() if c["name"] == "herald_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.click('#nav a[data-view="notifications"]')
    expect(page.locator("#view-notifications")).to_be_visible()
    page.evaluate("window.__notReloaded = true")
    tag = post(service, subject=f"Live {uuid.uuid4().hex[:6]}")
    expect(row(page, tag)).to_be_visible(timeout=TIMEOUT_MS)
    expect(row(page, tag).locator(".badge")).to_have_text("sent", timeout=TIMEOUT_MS)
    assert page.evaluate("window.__notReloaded") is True


def test_open_a_notification_and_see_its_attempts(service: Service, console: Console) -> None:
    page = console.page
    tag = post(service, subject="Attempts for {user.name.first}")
    wait_api_status(service, tag, "sent")
    log_in(service, page)
    page.goto(f"{service.base_url}/admin#/notifications")
    row(page, tag).locator("a.tag").click()
    expect(page.locator("#view-detail")).to_be_visible()
    expect(page.locator("#d-tag")).to_have_text(tag)
    expect(page.locator("#d-status")).to_have_text("sent", timeout=TIMEOUT_MS)
    attempts = page.locator("#d-attempts tr")
    expect(attempts).to_have_count(1)
    expect(attempts.first).to_contain_text("smtp")
    expect(attempts.first).to_contain_text("sent")
    expect(page.locator("#d-rendered")).to_contain_text("Attempts for Bob")
    expect(page.locator("#d-payload")).to_contain_text("b…@example.com")
    expect(page.locator("#d-payload")).not_to_contain_text("bob@example.com")


def test_retry_a_dead_one_and_watch_it_become_sent(service: Service, console: Console) -> None:
    page = console.page
    address = f"dead-{uuid.uuid4().hex[:6]}@example.com"
    service.sink.handler.refuse[address] = "451 4.3.0 try again later"
    try:
        tag = post(service, to=address)
        wait_api_status(service, tag, "dead")
    finally:
        service.sink.handler.refuse.pop(address, None)
    log_in(service, page)
    page.goto(f"{service.base_url}/admin#/notifications?status=dead")
    expect(row(page, tag)).to_be_visible(timeout=TIMEOUT_MS)
    row(page, tag).locator("input[type=checkbox]").check()
    expect(page.locator("#selection")).to_have_text("1 selected")
    page.click("#bulk-retry")
    expect(page.locator("#toast")).to_contain_text("1 of 1 retried", timeout=TIMEOUT_MS)
    page.goto(f"{service.base_url}/admin#/n/{tag}")
    expect(page.locator("#d-status")).to_have_text("sent", timeout=TIMEOUT_MS)
    expect(page.locator("#d-attempts")).to_contain_text("revived")
    expect(page.locator("#d-retry")).to_be_disabled()


def test_pause_email_see_one_wait_resume_see_it_sent(service: Service, console: Console) -> None:
    page = console.page
    log_in(service, page)
    email = page.locator('#channels tr[data-channel="email"]')
    try:
        email.locator('button[data-action="pause"]').click()
        expect(email.locator(".badge")).to_have_text("paused", timeout=TIMEOUT_MS)
        tag = post(service, subject="Held back")
        page.goto(f"{service.base_url}/admin#/n/{tag}")
        expect(page.locator("#d-status")).to_have_text("queued", timeout=TIMEOUT_MS)
        sent_beside(service, tag, "+14155553003")  # had email not been paused, it would be sent
        page.reload()
        expect(page.locator("#d-status")).to_have_text("queued", timeout=TIMEOUT_MS)
        expect(page.locator("#d-cancel")).to_be_enabled()
        page.click('#nav a[data-view="overview"]')
        expect(email.locator(".badge")).to_have_text("paused")
        expect(email.locator("td").nth(1)).not_to_have_text("0")  # it waits in the queue
        email.locator('button[data-action="resume"]').click()
        expect(email.locator(".badge")).to_have_text("delivering", timeout=TIMEOUT_MS)
        page.goto(f"{service.base_url}/admin#/n/{tag}")
        expect(page.locator("#d-status")).to_have_text("sent", timeout=TIMEOUT_MS)
    finally:
        with httpx.Client(base_url=service.base_url, headers=ADMIN, timeout=30) as client:
            client.post("/v1/admin/channels/email/resume")


def test_hostile_payloads_are_shown_as_text(service: Service, console: Console) -> None:
    page = console.page
    subject = "<img src=x onerror=alert(1)>"
    title = "<script>alert(2)</script>"
    tag = post(service, subject=subject, title=title, vars={"message": "<b onmouseover=alert(3)>hi</b>"})
    log_in(service, page)
    page.goto(f"{service.base_url}/admin#/notifications")
    expect(row(page, tag)).to_contain_text(subject, timeout=TIMEOUT_MS)
    assert row(page, tag).locator("img").count() == 0
    row(page, tag).locator("a.tag").click()
    expect(page.locator("#d-rendered")).to_contain_text(subject)
    expect(page.locator("#d-payload")).to_contain_text(title)
    assert page.locator("#view-detail img, #view-detail script, #view-detail b").count() == 0
    page.wait_for_timeout(1000)
    assert not console.dialogs


def test_every_view_renders_without_errors(service: Service, console: Console, tmp_path: Path) -> None:
    from analytics.report import build
    from capture.outbox import append

    page = console.page
    _, html = build(service.data_dir, None, None, True)  # the latest report, for Analytics
    (service.data_dir / "analytics").mkdir(exist_ok=True)
    (service.data_dir / "analytics" / "report.html").write_text(html, encoding="utf-8")
    append(service.data_dir / "outbox", "sms", {"to": "+14155550100", "body": "<b>code</b> 1234"})
    append(service.data_dir / "outbox", "email", {"to": ["bob@example.com"], "subject": "Hi Bob"})
    log_in(service, page)
    expect(page.locator("#channels tr")).to_have_count(5)
    expect(page.locator("#shards tr")).to_have_count(4)
    for _ in range(4):  # some traffic for the charts
        tag = post(service, subject="For the overview")
        page.wait_for_timeout(1500)
    expect(page.locator("#m-incoming")).not_to_have_text("0.00", timeout=TIMEOUT_MS)
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
    for view, ready in (("notifications", "#rows tr"), ("outbox", "#outbox-rows tr"),
                        ("analytics", "#report-frame")):
        page.click(f'#nav a[data-view="{view}"]')
        expect(page.locator(f"#view-{view}")).to_be_visible()
        expect(page.locator(ready).first).to_be_visible(timeout=TIMEOUT_MS)
        page.wait_for_timeout(500)
        page.screenshot(path=str(tmp_path / f"{view}.png"), full_page=True)
        if view == "outbox":
            expect(page.locator("#outbox-rows")).to_contain_text("<b>code</b> 1234")  # as text
            expect(page.locator("#outbox-rows")).to_contain_text("+1…00")
    report = page.frame_locator("#report-frame")
    expect(report.locator("h1")).to_have_text("Herald delivery report", timeout=TIMEOUT_MS)
    page.goto(f"{service.base_url}/admin#/n/{tag}")
    expect(page.locator("#d-status")).to_have_text("sent", timeout=TIMEOUT_MS)
    page.screenshot(path=str(tmp_path / "detail.png"), full_page=True)
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login-error")).to_have_text("Logged out.")
    page.screenshot(path=str(tmp_path / "login.png"), full_page=True)


def test_a_failed_search_is_not_sent_again_on_live_updates(service: Service, console: Console) -> None:
    page = console.page
    console.expected.append("422")  # the refused search's own answer
    log_in(service, page)
    searches: list[str] = []
    page.on("request", lambda request: searches.append(request.url)
            if "/v1/admin/notifications?" in request.url else None)
    page.goto(f"{service.base_url}/admin#/notifications?since=not-a-time")
    expect(page.locator("#toast")).to_contain_text("Could not load notifications",
                                                   timeout=TIMEOUT_MS)
    # The counters move, so live updates come (a sample every 1.5 s): none re-sends the search.
    for _ in range(2):
        wait_api_status(service, post(service, subject="after a failed search"), "sent")
    page.wait_for_timeout(6000)
    assert len(searches) == 1, searches
    expect(page.locator("#list-live")).to_contain_text("not live")
    # Searching again is the operator's call: a good search goes out and the list is live again.
    page.goto(f"{service.base_url}/admin#/notifications")
    expect(page.locator("#list-live")).to_contain_text("live · updated", timeout=TIMEOUT_MS)
