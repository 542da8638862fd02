"""The in-memory aggregate cache: a hit costs one read of newer events, and is never stale,
even when another process changed the account meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from domain.account import Account
from interfaces.container import Container, build
from interfaces.settings import Settings
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock, shown


@pytest.fixture
def other_process(settings: Settings, clock: FakeClock) -> Iterator[Container]:
    """A second container on the same stores, as a second server process would be."""
    other = build(settings, clock=clock)
    yield other
    other.close()


def test_a_cached_account_is_brought_up_to_date_with_what_another_process_recorded(
    container: Container, other_process: Container
) -> None:
    account = container.registration.register("ada@example.com", "ada", PASSWORD)
    assert shown(container, account.id).display_name == ""  # now cached here
    assert container.log.repository.cache is not None
    other_process.profile.update(account.id, "Ada Lovelace")
    assert shown(container, account.id).display_name == "Ada Lovelace"


def test_a_command_never_mutates_the_cached_copy(container: Container) -> None:
    account = container.registration.register("ada@example.com", "ada", PASSWORD)
    loaded = container.log.find(account.id, Account)
    assert loaded is not None
    loaded.update_profile("changed, never saved", container.clock.now())
    assert shown(container, account.id).display_name == ""


def test_the_cache_is_bounded_by_the_setting(settings: Settings, clock: FakeClock) -> None:
    import msgspec

    off = build(msgspec.structs.replace(settings, aggregate_cache_size=0), clock=clock)
    try:
        assert off.log.repository.cache is None
    finally:
        off.close()
    on: Any = build(msgspec.structs.replace(settings, aggregate_cache_size=3), clock=clock)
    try:
        assert on.log.repository.cache.maxsize == 3
    finally:
        on.close()
