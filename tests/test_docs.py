"""The documentation says what the code does: the README fits a screen and its links land, every
page of docs/ is in the site's navigation, the security page cites tests that exist, and the
generated reference pages (settings, API, events, problem codes) are what the code says now."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import docs_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CITATION = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
REGENERATE = "run `make docs-reference` and commit the result"


def test_every_test_the_security_page_cites_exists() -> None:
    page = (DOCS / "security.md").read_text()
    citations = set(CITATION.findall(page))
    assert len(citations) >= 50
    missing = [
        f"{path}::{name}"
        for path, name in sorted(citations)
        if not (ROOT / path).is_file()
        or not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    ]
    assert not missing, missing


def test_the_readme_fits_a_screen() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move the detail into docs/"


def test_every_relative_link_of_the_readme_lands_on_a_file() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = [t for t in LINK.findall(readme) if "://" not in t and not t.startswith("#")]
    assert "docs/security.md" in targets
    missing = [t for t in targets if not (ROOT / t.split("#", 1)[0]).is_file()]
    assert not missing, missing


def test_the_readme_calls_the_cli_where_it_is_installed() -> None:
    """A plain `tessera` is "command not found" in a fresh clone: the CLI is in .venv/bin."""
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", readme, re.DOTALL):
        for line in block.splitlines():
            assert not re.match(r"^\s*(\$ )?tessera ", line), line


def test_the_reliability_targets_are_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    contributing = (DOCS / "contributing" / "index.md").read_text()
    for target in ("make fuzz", "make stateful", "make chaos", "make soak"):
        assert target in readme, target
        assert target in contributing, target


def _nav_pages(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_nav_pages(item) for item in nav))
    if isinstance(nav, dict):
        return set().union(*(_nav_pages(value) for value in nav.values()))
    return set()


def test_every_page_in_docs_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = _nav_pages(config["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - in_nav == set(), "pages missing from mkdocs.yml's nav"
    assert in_nav - pages == set(), "nav entries without a page"


def test_the_sites_theme_needs_no_font_from_the_network() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["theme"]["font"] is False


@pytest.mark.parametrize("page", sorted(docs_reference.PAGES))
def test_each_reference_page_is_what_the_code_says_now(page: str) -> None:
    committed = (docs_reference.REFERENCE / page).read_text()
    assert committed == docs_reference.PAGES[page](), (
        f"docs/reference/{page} differs from the code: {REGENERATE}"
    )


def test_every_setting_is_in_the_reference_with_a_meaning() -> None:
    from interfaces.settings import Settings

    sections, _ = docs_reference.env_example_sections((ROOT / ".env.example").read_text())
    meanings = {name: meaning for section in sections for name, meaning in section.rows}
    variables = {f.upper() for f in Settings.__struct_fields__} - {"OIDC_PROVIDER_VALUES"}
    assert set(meanings) == variables
    unexplained = sorted(name for name, meaning in meanings.items() if not meaning)
    assert not unexplained, f"describe these in a comment above them in .env.example: {unexplained}"
    page = (docs_reference.REFERENCE / "settings.md").read_text()
    missing = sorted(name for name in variables if f"`{name}`" not in page)
    assert not missing, f"{missing}: {REGENERATE}"


def test_every_route_and_method_is_in_the_api_reference() -> None:
    page = (docs_reference.REFERENCE / "api.md").read_text()
    operations = list(docs_reference.operations(docs_reference.served_openapi()))
    assert len(operations) >= 40
    missing = [f"{m} {p}" for m, p, _ in operations if f"### `{m} {p}`" not in page]
    assert not missing, f"{missing}: {REGENERATE}"


def test_every_event_of_every_aggregate_is_in_the_catalogue() -> None:
    page = (docs_reference.REFERENCE / "events.md").read_text()
    aggregates = docs_reference.aggregates()
    assert {a.__name__ for a in aggregates} >= {"Account", "Session", "EmailClaim"}
    missing = [
        f"{aggregate.__name__}.{event.__name__}"
        for aggregate in aggregates
        for event in docs_reference.events_of(aggregate)
        if f"| `{event.__name__}` |" not in page.split(f"## {aggregate.__name__}\n", 1)[-1]
    ]
    assert not missing, f"{missing}: {REGENERATE}"


def test_every_problem_code_is_in_the_reference() -> None:
    from interfaces.http.problems import DOMAIN_PROBLEMS, HTTP_CODES

    page = (docs_reference.REFERENCE / "problems.md").read_text()
    codes = {code for _, code, _ in DOMAIN_PROBLEMS.values()} | set(HTTP_CODES.values())
    codes |= {p.code for p in docs_reference.problem_codes()}
    assert {"overloaded", "malformed_request", "unavailable"} <= codes
    missing = sorted(code for code in codes if f"`{code}`" not in page)
    assert not missing, f"{missing}: {REGENERATE}"


def test_make_test_builds_the_site_strictly() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:.*\bdocs\b", makefile, re.MULTILINE), "make test must build the site"
    assert re.search(r"^docs:.*\n(\t.*\n)*\t.*mkdocs build --strict", makefile, re.MULTILINE)
