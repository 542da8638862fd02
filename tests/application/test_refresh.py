"""Refreshing off the event store: a refresh is one step of its session's chain in the shared
store and a look at the account's mark; the event log is read only when the account changed and
written on a session's first rotation and then once an hour. Another process's change to the
account (a password change, a sign-out everywhere, a disabling, a role) is seen by the very next
refresh anywhere."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import msgspec
import pytest

from application.tokens import digest, issue_refresh_token, issue_token
from domain.errors import InvalidAccessToken, InvalidRefreshToken, RefreshTokenReused
from domain.session import Session
from interfaces.container import Container, build
from interfaces.settings import Settings
from tests.application.test_account_views import count_store_reads
from tests.application.test_use_cases import CLIENT, PASSWORD, verified
from tests.conftest import FakeClock, authenticated, event_count, refreshed


@pytest.fixture
def other_process(settings: Settings, clock: FakeClock) -> Iterator[Container]:
    """A second container on the same stores, as a second server process would be."""
    other = build(settings, clock=clock)
    yield other
    other.close()


def test_an_unchanged_account_refreshes_without_the_event_store(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    tokens = refreshed(container, tokens.refresh_token)  # the first rotation is recorded
    reads = count_store_reads(container, monkeypatch)
    written = event_count(container)
    for _ in range(5):
        tokens = refreshed(container, tokens.refresh_token)
    assert reads == [], "an unchanged account and an unrecorded rotation need no store read"
    assert event_count(container) == written, "and record nothing"
    assert authenticated(container, tokens.access_token).account_id is not None


def test_the_log_keeps_the_first_rotation_then_one_an_hour(
    container: Container, clock: FakeClock
) -> None:
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    session_id = authenticated(container, tokens.access_token).session_id
    for _ in range(10):
        clock.advance(minutes=1)
        tokens = refreshed(container, tokens.refresh_token)
    idle = timedelta(seconds=container.settings.refresh_token_ttl)
    session = container.log.find(session_id, Session)
    assert session is not None
    first_rotation = clock.now() - timedelta(minutes=9)
    assert near(session.expires_at, first_rotation + idle), "recorded then, not since"
    clock.advance(minutes=61)
    tokens = refreshed(container, tokens.refresh_token)
    session = container.log.find(session_id, Session)
    assert session is not None
    assert near(session.expires_at, clock.now() + idle)
    assert session.refresh_token_hash == digest(tokens.refresh_token)
    assert len(session.spent_token_hashes) == 2, "two records: the first rotation, the 12th"


def near(one: datetime, other: datetime) -> bool:
    """Chains keep milliseconds."""
    return abs(one - other) < timedelta(milliseconds=1)


def test_changes_made_by_another_process_are_seen_by_the_next_refresh(
    container: Container, other_process: Container
) -> None:
    verified(container)
    changer = container.login.log_in("ada", PASSWORD, CLIENT)
    elsewhere = container.login.log_in("ada", PASSWORD, CLIENT)
    spare = container.login.log_in("ada", PASSWORD, CLIENT)
    elsewhere = refreshed(container, elsewhere.refresh_token)  # a copy of the account is kept
    spare = refreshed(container, spare.refresh_token)

    other_process.administration.grant_role("ada", "auditor", operator="cli:root")
    spare = refreshed(container, spare.refresh_token)
    assert "auditor" in authenticated(container, spare.access_token).roles

    claims = authenticated(other_process, changer.access_token)
    other_process.passwords.change(claims, PASSWORD, "another correct horse battery")
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, elsewhere.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, spare.refresh_token)
    kept = refreshed(container, changer.refresh_token)  # the session that changed it lives on

    other_process.administration.disable("ada", operator="cli:root")
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, kept.refresh_token)


def test_a_sign_out_everywhere_in_another_process_ends_every_chain(
    container: Container, other_process: Container
) -> None:
    verified(container)
    devices = [container.login.log_in("ada", PASSWORD, CLIENT) for _ in range(2)]
    devices = [refreshed(container, d.refresh_token) for d in devices]
    claims = authenticated(other_process, devices[0].access_token)
    other_process.sessions.log_out(claims, refresh_token=None, all_sessions=True)
    for device in devices:
        with pytest.raises(InvalidRefreshToken):
            refreshed(container, device.refresh_token)


def test_a_forged_refresh_token_is_refused_and_records_nothing(container: Container) -> None:
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    session_id = authenticated(container, tokens.access_token).session_id
    raw = bytearray(base64.urlsafe_b64decode(tokens.refresh_token + "=="))
    written = event_count(container)
    forgeries = [
        issue_refresh_token(session_id, 0, b"another service's key"),  # not ours
        issue_refresh_token(session_id, 7, b"another service's key"),  # a later turn, not ours
    ]
    for index in (20, len(raw) - 1):  # one bit of the random part, of the tag
        tampered = bytearray(raw)
        tampered[index] ^= 1
        forgeries.append(base64.urlsafe_b64encode(tampered).rstrip(b"=").decode())
    for forged in forgeries:
        with pytest.raises(InvalidRefreshToken):
            refreshed(container, forged)
    assert event_count(container) == written
    assert refreshed(container, tokens.refresh_token).refresh_token, "the session is unharmed"


def test_reuse_ends_the_session_in_the_log_and_in_every_process(
    container: Container, other_process: Container
) -> None:
    verified(container)
    first = container.login.log_in("ada", PASSWORD, CLIENT)
    session_id = authenticated(container, first.access_token).session_id
    second = refreshed(container, first.refresh_token)
    third = refreshed(container, second.refresh_token)
    with pytest.raises(RefreshTokenReused):
        refreshed(other_process, first.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, third.refresh_token)
    with pytest.raises(InvalidAccessToken):
        authenticated(container, third.access_token)
    session = container.log.find(session_id, Session)
    assert session is not None and session.revocation_reason == "refresh_token_reuse"


def test_a_session_from_before_chains_moves_onto_one(container: Container) -> None:
    """Sessions started before this release hold a token the log checks: their first refresh
    goes through the log, as before, and starts their chain."""
    verified(container)
    account = container.log.account_for_login("ada")
    assert account is not None
    now = container.clock.now()
    session_id = uuid4()
    old_token = issue_token(session_id)
    session = Session(
        id=session_id,
        account_id=account.id,
        refresh_token_hash=digest(old_token),
        expires_at=now + timedelta(days=14),
        user_agent="old",
        ip="127.0.0.1",
        timestamp=now,
        password_generation=account.password_generation,
    )
    container.log.save(session)
    moved = refreshed(container, old_token)
    again = refreshed(container, moved.refresh_token)
    assert authenticated(container, again.access_token).session_id == session_id
    with pytest.raises(RefreshTokenReused):
        refreshed(container, old_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, again.refresh_token)
    ended = container.log.find(session_id, Session)
    assert ended is not None and ended.revocation_reason == "refresh_token_reuse"


def test_a_refresh_keeps_the_sign_in_time_as_auth_time(
    container: Container, clock: FakeClock
) -> None:
    """OIDC Core's auth_time: when the person proved who they are. A refresh is no proof, so
    a stolen refresh token never makes a session look freshly signed in."""
    verified(container)
    signed_in = int(clock.now().timestamp())
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    assert authenticated(container, tokens.access_token).auth_time == signed_in
    for _ in range(3):
        clock.advance(minutes=10)
        tokens = refreshed(container, tokens.refresh_token)
    claims = authenticated(container, tokens.access_token)
    assert claims.auth_time == signed_in
    assert claims.issued_at > signed_in + 25 * 60


# The reuse interval (REFRESH_REUSE_INTERVAL, 10 s by default): two tabs, or an app retrying a
# refresh whose answer was lost, present one token twice; within the interval of its own
# rotation the second gets the pair the first was turned into, not a theft verdict.


@pytest.fixture
def strict(settings: Settings, clock: FakeClock) -> Iterator[Container]:
    """REFRESH_REUSE_INTERVAL=0: any spent token is theft, as before the interval."""
    built = build(msgspec.structs.replace(settings, refresh_reuse_interval=0), clock=clock)
    built.mail_broker.start_worker(threads=1, poll_ms=20)
    yield built
    built.close()


def test_a_token_back_within_the_interval_gets_the_same_successor(
    container: Container, clock: FakeClock
) -> None:
    verified(container)
    first = container.login.log_in("ada", PASSWORD, CLIENT)
    session_id = authenticated(container, first.access_token).session_id
    second = refreshed(container, first.refresh_token)
    written = event_count(container)
    clock.advance(seconds=container.settings.refresh_reuse_interval - 1)
    again = refreshed(container, first.refresh_token)
    assert again.refresh_token == second.refresh_token, "one chain for both tabs"
    assert authenticated(container, again.access_token).session_id == session_id
    assert event_count(container) == written, "no theft, nothing recorded"
    third = refreshed(container, again.refresh_token)  # the session goes on, from either tab
    assert authenticated(container, third.access_token).session_id == session_id
    session = container.log.find(session_id, Session)
    assert session is not None and session.revoked_at is None


def test_a_token_back_after_the_interval_ends_the_session(
    container: Container, clock: FakeClock
) -> None:
    verified(container)
    first = container.login.log_in("ada", PASSWORD, CLIENT)
    second = refreshed(container, first.refresh_token)
    clock.advance(seconds=container.settings.refresh_reuse_interval)
    with pytest.raises(RefreshTokenReused):
        refreshed(container, first.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, second.refresh_token)
    with pytest.raises(InvalidAccessToken):
        authenticated(container, second.access_token)


def test_a_token_two_turns_old_ends_the_session_even_within_the_interval(
    container: Container,
) -> None:
    """Only the token turned last has a grace: an older one is theft, however soon it comes."""
    verified(container)
    first = container.login.log_in("ada", PASSWORD, CLIENT)
    second = refreshed(container, first.refresh_token)
    third = refreshed(container, second.refresh_token)
    with pytest.raises(RefreshTokenReused):
        refreshed(container, first.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, third.refresh_token)
    with pytest.raises(InvalidAccessToken):
        authenticated(container, third.access_token)


def test_with_no_interval_any_reuse_ends_the_session(strict: Container) -> None:
    verified(strict)
    first = strict.login.log_in("ada", PASSWORD, CLIENT)
    second = refreshed(strict, first.refresh_token)
    with pytest.raises(RefreshTokenReused):
        refreshed(strict, first.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(strict, second.refresh_token)


def test_the_interval_gives_nothing_to_a_session_that_has_ended(
    container: Container,
) -> None:
    """A grace is for a live session: a logged-out one's last token is refused, not renewed."""
    verified(container)
    first = container.login.log_in("ada", PASSWORD, CLIENT)
    second = refreshed(container, first.refresh_token)
    container.sessions.log_out(
        authenticated(container, second.access_token), refresh_token=None, all_sessions=False
    )
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, first.refresh_token)


def test_a_sign_out_everywhere_holds_against_a_refresh_that_raced_it(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh whose chain step falls between the sign-out's cutoff and its save reads the
    account before the save, so its terms still admit the session: the cutoff written again
    after the save is what stops the access token it got."""
    verified(container)
    device = container.login.log_in("ada", PASSWORD, CLIENT)
    device = refreshed(container, device.refresh_token)
    claims = authenticated(container, device.access_token)
    raced: list[Any] = []
    save = container.log.save

    def save_after_a_racing_refresh(*aggregates: Any) -> Any:
        signing_out = any(
            type(e).__name__ == "AllSessionsRevoked"
            for a in aggregates
            for e in getattr(a, "pending_events", ())
        )
        if signing_out and not raced:
            clock.advance(seconds=1)  # after the first cutoff
            raced.append(refreshed(container, device.refresh_token))
        return save(*aggregates)

    monkeypatch.setattr(container.log, "save", save_after_a_racing_refresh)
    container.sessions.log_out(claims, refresh_token=None, all_sessions=True)
    assert raced, "the refresh ran between the cutoff and the save"
    with pytest.raises(InvalidAccessToken):
        authenticated(container, raced[0].access_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, raced[0].refresh_token)
