"""Headless Chromium for the browser tests: Debian's build (``make test`` installs it), driven by
Playwright with ``executable_path`` (``playwright install`` cannot download browsers here)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"
#: As root, without the background-networking flags Chromium keeps calling out and is refused.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def in_ci() -> bool:
    """``CI=true`` (``.ci/run`` sets it, as CI services do): a missing Chromium is a failure there."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Locally, tests that need Chromium are skipped when it is missing; in CI they are left to
    fail in the ``browser`` fixture, so a CI box without it cannot pass by skipping them."""
    if os.path.exists(CHROMIUM) or in_ci():
        return
    skip = pytest.mark.skip(reason=f"browser tests need Chromium at {CHROMIUM} "
                                   "(apt-get install -y chromium)")
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()) or item.get_closest_marker("browser"):
            item.add_marker(skip)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"CI=true and no Chromium at {CHROMIUM}: the browser tests cannot run "
                    "(make browser-deps installs it)", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()
