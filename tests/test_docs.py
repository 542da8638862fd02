"""The security page cites tests by `file::name`: each must exist, or the page is wrong."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_test_the_security_page_cites_exists() -> None:
    page = (ROOT / "docs" / "security.md").read_text()
    citations = set(CITATION.findall(page))
    assert len(citations) >= 50
    missing = [
        f"{path}::{name}"
        for path, name in sorted(citations)
        if not (ROOT / path).is_file()
        or not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    ]
    assert not missing, missing


def test_the_readme_links_the_security_page_and_the_reliability_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/security.md)" in readme
    for target in ("make fuzz", "make stateful", "make chaos", "make soak"):
        assert target in readme, target
