"""Races decided by the event store's optimistic concurrency, never by a read-then-write check."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from application.views import Client, TokenPair
from domain.account import Account
from domain.errors import (
    DomainError,
    EmailTaken,
    InvalidAccessToken,
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshTokenReused,
    UsernameTaken,
)
from interfaces.container import Container, build
from tests.application.test_use_cases import PASSWORD, verified
from tests.conftest import authenticated, refreshed


@pytest.fixture
def settings(settings: Any) -> Any:
    """Room in the hashing queue for every racer: these tests race the store, not admission
    control (tests/infrastructure/test_hash_gate.py covers that), nor lockout."""
    return msgspec.structs.replace(
        settings, hash_queue=200, hash_queue_timeout=60, lockout_threshold=1000
    )


def race(n: int, attempt: Callable[[int], Any]) -> list[Any]:
    """Runs `attempt` in n threads released at once; returns each result or exception."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = attempt(i)
        except Exception as error:  # collected and asserted on below
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_simultaneous_registrations_of_one_email_make_exactly_one_account(
    container: Container,
) -> None:
    results = race(
        100, lambda i: container.registration.register("Race@Example.com", f"racer{i}", PASSWORD)
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1
    assert [e for e in losers if not isinstance(e, EmailTaken)] == []
    claim = container.log.email_claim("race@example.com")
    assert claim is not None
    assert claim.account_id == winners[0].id
    accounts = [
        n
        for n in container.log.recorder.select_notifications(start=1, limit=1000)
        if n.topic.endswith("Account.Registered")
    ]
    assert len(accounts) == 1


def test_simultaneous_registrations_of_one_username_make_exactly_one_account(
    container: Container,
) -> None:
    results = race(
        8, lambda i: container.registration.register(f"r{i}@example.com", "samename", PASSWORD)
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, UsernameTaken) for r in results if isinstance(r, Exception))


def test_simultaneous_refreshes_of_one_token_all_get_its_one_successor(
    container: Container,
) -> None:
    """Two tabs (or fifty) refreshing at once end up on one chain, within
    REFRESH_REUSE_INTERVAL (10 s by default)."""
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, Client())
    assert isinstance(tokens, TokenPair)
    results = race(50, lambda i: refreshed(container, tokens.refresh_token))
    assert all(isinstance(r, TokenPair) for r in results), results
    assert len({r.refresh_token for r in results}) == 1
    for pair in results:
        assert authenticated(container, pair.access_token).account_id is not None
    assert refreshed(container, results[0].refresh_token).refresh_token, "the session lives"


@pytest.fixture
def strict(settings: Any, clock: Any) -> Iterator[Container]:
    """REFRESH_REUSE_INTERVAL=0: any spent token is theft."""
    built = build(msgspec.structs.replace(settings, refresh_reuse_interval=0), clock=clock)
    built.mail_broker.start_worker(threads=1, poll_ms=20)
    yield built
    built.close()


def test_simultaneous_refreshes_of_one_token_succeed_at_most_once_when_strict(
    strict: Container,
) -> None:
    container = strict
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, Client())
    assert isinstance(tokens, TokenPair)
    results = race(50, lambda i: refreshed(container, tokens.refresh_token))
    successes = [r for r in results if not isinstance(r, Exception)]
    assert len(successes) <= 1
    assert all(isinstance(r, DomainError) for r in results if isinstance(r, Exception)), results
    if any(isinstance(r, RefreshTokenReused) for r in results):
        # Reuse was seen: the whole session is over, the one new token included.
        for pair in successes:
            with pytest.raises(InvalidRefreshToken):
                refreshed(container, pair.refresh_token)
            with pytest.raises(InvalidAccessToken):
                authenticated(container, pair.access_token)
        with pytest.raises(InvalidAccessToken):
            authenticated(container, tokens.access_token)


def test_a_password_change_racing_logins_with_the_old_password_leaves_none_of_them_alive(
    container: Container,
) -> None:
    """Whatever the interleaving, a login that verified the old password ends with no live
    session: ended by the change's cutoff, or refused because the change committed first."""
    verified(container)
    passwords = [PASSWORD, *(f"{PASSWORD} round {n}" for n in range(1, 4))]
    for old, new in itertools.pairwise(passwords):
        keeper = container.login.log_in("ada", old, Client())
        assert isinstance(keeper, TokenPair)
        claims = authenticated(container, keeper.access_token)

        def attempt(i: int, old: str = old, new: str = new, claims: Any = claims) -> Any:
            if i == 0:
                return container.passwords.change(claims, old, new)
            return container.login.log_in("ada", old, Client(user_agent=f"racer {i}"))

        results = race(8, attempt)
        assert results[0] is None, results[0]
        assert_no_login_lives(container, results[1:])
        authenticated(container, keeper.access_token)  # the changer's own session lives on
        with pytest.raises(InvalidCredentials):
            container.login.log_in("ada", old, Client())
        assert isinstance(container.login.log_in("ada", new, Client()), TokenPair)


def test_refreshes_on_many_devices_at_once_all_succeed(container: Container) -> None:
    """Sessions are separate streams: devices never conflict with each other."""
    verified(container)
    devices = [container.login.log_in("ada", PASSWORD, Client()) for _ in range(6)]
    results = race(6, lambda i: refreshed(container, devices[i].refresh_token))
    assert not [r for r in results if isinstance(r, Exception)]


def test_concurrent_profile_edits_all_land(container: Container) -> None:
    verified(container)
    account_id = container.log.account_for_login("ada").id  # type: ignore[union-attr]
    results = race(6, lambda i: container.profile.update(account_id, f"name {i}"))
    assert not [r for r in results if isinstance(r, Exception)]
    account = container.log.repository.get(account_id)
    assert isinstance(account, Account)
    updates = [
        n
        for n in container.log.recorder.select_notifications(start=1, limit=1000)
        if n.topic.endswith("Account.ProfileUpdated")
    ]
    assert len(updates) == 6


def test_disabling_an_account_racing_its_logins_leaves_none_of_them_alive(
    container: Container,
) -> None:
    verified(container)

    def attempt(i: int) -> Any:
        if i == 0:
            return container.administration.disable("ada", operator="test")
        return container.login.log_in("ada", PASSWORD, Client(user_agent=f"racer {i}"))

    results = race(8, attempt)
    assert results[0] is True, results[0]
    assert_no_login_lives(container, results[1:])


def assert_no_login_lives(container: Container, logins: list[Any]) -> None:
    """Each racing login was refused as a wrong password would be, or its tokens are dead."""
    for result in logins:
        if isinstance(result, Exception):
            assert isinstance(result, InvalidCredentials), result
            continue
        with pytest.raises(InvalidRefreshToken):
            refreshed(container, result.refresh_token)
        with pytest.raises(InvalidAccessToken):
            authenticated(container, result.access_token)
