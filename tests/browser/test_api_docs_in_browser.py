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

        page.route("**/*", only_here)
        page.on(
            "console",
            lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto(f"{base}/schema")
        page.wait_for_selector(".opblock", timeout=20_000)
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/auth/login" in {o.replace("\u200b", "").strip() for o in operations}
        assert len(operations) > 20
        page.get_by_text("Tessera", exact=False).first.wait_for()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "api-docs.png"))
        context.close()
        assert elsewhere == []
        assert violations == []
