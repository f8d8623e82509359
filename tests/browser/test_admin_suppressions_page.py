"""The admin console's Suppressions panel in headless Chromium: an entry added through the API
shows up masked, is lifted with the two-step confirmation by the id the server gave, and is gone
(from the page and from every shard); one added from the page shows up too.

The page must not show a contact in full, nor raise a console error, a page error or a dialog
(the ``console`` fixture of ``test_admin_page`` checks that).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.test_admin_page import ADMIN, TIMEOUT_MS, Console, console, log_in
from tests.conftest import Service

__all__ = ["console"]  # the fixture, shared with the console's other browser tests
pytestmark = pytest.mark.browser
PATH = "/v1/admin/suppressions"


def listed(service: Service, tenant: str, contact: str) -> list[dict[str, object]]:
    with httpx.Client(base_url=service.base_url, headers=ADMIN, timeout=30) as client:
        answer = client.get(PATH, params={"tenant": tenant, "contact": contact})
        assert answer.status_code == 200, answer.text
        items: list[dict[str, object]] = answer.json()["items"]
        return items


def test_see_an_entry_added_through_the_api_lift_it_and_see_it_gone(
        service: Service, console: Console, tmp_path: Path) -> None:
    page = console.page
    domain = f"{uuid.uuid4().hex[:8]}.example.org"
    address = f"lift-me@{domain}"
    with httpx.Client(base_url=service.base_url, headers=ADMIN, timeout=30) as client:
        added = client.post(PATH, json={"tenant": "tenant-a", "contact": address})
        assert added.status_code == 201, added.text
    entry = added.json()
    log_in(service, page)
    page.click('#nav a[data-view="suppressions"]')
    expect(page.locator("#view-suppressions")).to_be_visible()
    page.fill("#sup-tenant", "tenant-a")
    page.click('#sup-find button[type="submit"]')
    row = page.locator(f'#sup-rows tr[data-id="{entry["id"]}"]')
    expect(row).to_be_visible(timeout=TIMEOUT_MS)
    expect(row).to_contain_text(f"l…@{domain}")
    expect(row).to_contain_text("manual")
    expect(page.locator("#view-suppressions")).not_to_contain_text(address)
    page.screenshot(path=str(tmp_path / "suppressions.png"), full_page=True)
    row.locator('button[data-action="lift"]').click()
    row.locator('button[data-action="keep"]').click()  # changed their mind: nothing happens
    expect(row.locator('button[data-action="lift"]')).to_be_visible()
    assert listed(service, "tenant-a", address)
    row.locator('button[data-action="lift"]').click()
    page.screenshot(path=str(tmp_path / "confirm.png"), full_page=True)
    row.locator('button[data-action="confirm-lift"]').click()
    expect(page.locator("#toast")).to_contain_text(f"l…@{domain} lifted", timeout=TIMEOUT_MS)
    expect(page.locator(f'#sup-rows tr[data-id="{entry["id"]}"]')).to_have_count(0)
    assert listed(service, "tenant-a", address) == []
    with service.client("tenant-a") as tenant:  # the tenant's own view: gone from the shards
        kept = tenant.get("/v1/suppressions").json()["items"]
    assert address not in [e["contact"] for e in kept]


def test_add_one_from_the_page(service: Service, console: Console) -> None:
    page = console.page
    domain = f"{uuid.uuid4().hex[:8]}.example.org"
    address = f"added@{domain}"
    log_in(service, page)
    page.goto(f"{service.base_url}/admin#/suppressions?tenant=tenant-b")
    expect(page.locator("#sup-add-contact")).to_be_enabled(timeout=TIMEOUT_MS)
    page.fill("#sup-add-contact", address)
    page.click("#sup-add-submit")
    expect(page.locator("#toast")).to_contain_text(f"a…@{domain} suppressed for tenant-b",
                                                   timeout=TIMEOUT_MS)
    (entry,) = listed(service, "tenant-b", address)
    expect(page.locator(f'#sup-rows tr[data-id="{entry["id"]}"]')).to_contain_text(f"a…@{domain}")
    with httpx.Client(base_url=service.base_url, headers=ADMIN, timeout=30) as client:
        assert client.delete(PATH, params={"tenant": "tenant-b", "id": str(entry["id"])}).status_code == 200
