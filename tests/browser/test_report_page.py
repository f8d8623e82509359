"""The HTML report in headless Chromium, opened from disk: no errors, no requests, every chart drawn."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Request

from analytics.report import CHARTS, compute, render_html
from tests.unit.test_report import HOSTILE, generate, write_log

pytestmark = pytest.mark.browser



@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    yield context.new_page()
    context.close()


@contextmanager
def screenshot_on_failure(page: Page, folder: Path) -> Iterator[None]:
    """What the page looked like when an assertion failed, as ``folder/failure.png``."""
    try:
        yield
    except Exception:
        page.screenshot(path=str(folder / "failure.png"), full_page=True)
        raise


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("herald-data")
    write_log(generate(), data)
    path = data / "report.html"
    path.write_text(render_html(compute(data)), encoding="utf-8")
    return path


def test_the_report_opens_cleanly_with_every_chart_drawn(page: Page, report_file: Path,
                                                          tmp_path: Path) -> None:
    problems: list[str] = []
    requests: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def on_request(request: Request) -> None:
        if not request.url.startswith(("file://", "data:")):
            requests.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", on_dialog)
    page.on("request", on_request)
    page.on("requestfailed", lambda request: problems.append(f"failed request: {request.url}"))

    page.goto(report_file.as_uri(), wait_until="load")
    with screenshot_on_failure(page, tmp_path):
        images = page.locator("img")
        assert images.count() == len(CHARTS)
        widths = images.evaluate_all("imgs => imgs.map(img => img.complete ? img.naturalWidth : 0)")
        assert all(width > 0 for width in widths), widths
        assert page.locator("h1").inner_text() == "Herald delivery report"
        assert page.get_by_text(HOSTILE, exact=True).first.is_visible()  # shown as text, not run
        assert page.locator("script").count() == 0
        assert not problems, problems
        assert not requests, requests
