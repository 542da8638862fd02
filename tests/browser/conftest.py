from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.browser.other_site import App


@pytest.fixture
def app() -> Iterator[App]:
    """An app on another site than tessera's (tests/browser/other_site.py)."""
    from tests.browser.other_site import App  # it needs playwright, which a test may skip for

    made = App()
    yield made
    made.close()
