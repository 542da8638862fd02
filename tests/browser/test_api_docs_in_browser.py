"""/schema in a real browser with no way out: Swagger UI, served by tessera itself, shows the
API's operations; nothing is fetched from another host, and the page's CSP is not violated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import SCREENSHOTS
from tests.browser.test_pages_in_browser import browser, serve

playwright = pytest.importorskip("playwright.sync_api")

__all__ = ["browser"]  # the fixture, shared


def test_the_api_docs_render_their_operations_offline(browser: Any, tmp_path: Path) -> None:
    for base, _ in serve(tmp_path):
        elsewhere, violations = look_offline(browser, base)
        assert elsewhere == []
        assert violations == []


def look_offline(browser: Any, base: str) -> tuple[list[str], list[str]]:
    """Opens /schema with every other host unreachable; the URLs it tried elsewhere, and the
    CSP violations the browser reported."""
    context = browser.new_context()
    page = context.new_page()
    elsewhere: list[str] = []
    violations: list[str] = []

    def only_here(route: Any) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:  # as on a site with no internet: the request goes nowhere
            elsewhere.append(route.request.url)
            route.abort()

    def console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.route("**/*", only_here)
    page.on("console", console)
    page.goto(f"{base}/schema")
    page.wait_for_selector(".opblock", timeout=20_000)
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/auth/login" in {o.replace("\u200b", "").strip() for o in operations}
    assert len(operations) > 20
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "api-docs.png"))
    context.close()
    return elsewhere, violations
