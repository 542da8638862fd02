"""`GET /api/users/me` from each process's memory: no event-store read while the account is
unchanged, and never an old copy once another process changed it, even one that died between
its commit and its "changed" mark."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from application.ports import Unavailable
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


def count_store_reads(container: Container, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    reads: list[Any] = []
    get = container.log.repository.get

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return get(*args, **kwargs)

    monkeypatch.setattr(container.log.repository, "get", counted)
    return reads


def test_an_unchanged_account_is_shown_without_reading_the_event_store(
    container: Container, other_process: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = container.registration.register("ada@example.com", "ada", PASSWORD)
    reads = count_store_reads(container, monkeypatch)
    assert shown(container, account.id).username == "ada"
    assert len(reads) == 1
    for _ in range(3):
        assert shown(container, account.id).username == "ada"
    assert len(reads) == 1, "an unchanged account must come from memory"
    other_process.profile.update(account.id, "Ada Lovelace")
    assert shown(container, account.id).display_name == "Ada Lovelace"
    assert len(reads) == 2


def test_a_process_that_dies_between_commit_and_mark_leaves_no_old_copy_trusted(
    container: Container, other_process: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = container.registration.register("ada@example.com", "ada", PASSWORD)
    assert shown(container, account.id).display_name == ""  # a copy is kept here

    def dies(*args: Any, **kwargs: Any) -> None:
        raise Unavailable("the process died before it could say the account changed")

    monkeypatch.setattr(other_process.revocations, "changed", dies)
    other_process.profile.update(account.id, "Ada Lovelace")  # committed all the same
    assert shown(container, account.id).display_name == "Ada Lovelace"
    assert shown(container, account.id).display_name == "Ada Lovelace"


def test_an_account_whose_mark_was_lost_is_read_again_then_marked(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = container.registration.register("ada@example.com", "ada", PASSWORD)
    shown(container, account.id)
    forget_marks(container)
    reads = count_store_reads(container, monkeypatch)
    assert shown(container, account.id).username == "ada"
    assert shown(container, account.id).username == "ada"
    assert len(reads) == 1, "the read that finds no mark sets one, so the next is a hit"


def forget_marks(container: Container) -> None:
    """As when Redis restarts empty, or a mark expires."""
    if container.shared_server is not None:
        for key in container.shared_server.scan_iter("tessera:mark:*"):
            container.shared_server.delete(key)
    elif container.database.is_postgres:
        raise AssertionError("these tests run PostgreSQL with Redis")
    else:
        revocations: Any = container.revocations
        with revocations._file.connection() as db:
            db.execute("DELETE FROM account_marks")


def test_a_copy_read_while_a_save_is_in_flight_is_not_kept(
    container: Container, other_process: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read between another process's "changing" mark and its commit, the copy is already old
    when the commit lands; should that process die before its "changed" mark, the "changing"
    mark is all that is left, so it must never vouch for a copy."""
    account = container.registration.register("ada@example.com", "ada", PASSWORD)
    in_flight = other_process.revocations.changing([account.id])
    assert shown(container, account.id).display_name == ""  # read before the commit

    def dies(*args: Any, **kwargs: Any) -> None:
        raise Unavailable("the process died before it could say the account changed")

    monkeypatch.setattr(other_process.revocations, "changing", lambda ids: in_flight)
    monkeypatch.setattr(other_process.revocations, "changed", dies)
    other_process.profile.update(account.id, "Ada Lovelace")
    assert shown(container, account.id).display_name == "Ada Lovelace"
