"""Session rules: rotation, reuse detection, expiry and revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.errors import InvalidRefreshToken, RefreshTokenReused
from domain.session import Session, SessionTerms

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(days=14)


def started() -> Session:
    return Session(
        id=uuid4(),
        account_id=uuid4(),
        refresh_token_hash="first",
        expires_at=LATER,
        user_agent="test",
        ip="127.0.0.1",
        timestamp=T0,
    )


def terms(cutoff: datetime | None, generation: int) -> SessionTerms:
    """What an open account with no kept session says: its cutoff and password generation."""
    return SessionTerms(
        open=True,
        cutoff=cutoff,
        kept_session_id=None,
        password_generation=generation,
        roles=(),
    )


def names(session: Session) -> list[str]:
    return [type(e).__name__ for e in session.collect_events()]


def test_refreshing_spends_the_token_and_takes_the_new_one() -> None:
    session = started()
    session.refresh("first", "second", expires_at=LATER, at=T0, terms=terms(None, 0))
    assert session.refresh_token_hash == "second"
    assert names(session) == ["SessionStarted", "SessionRefreshed"]


def test_a_spent_token_revokes_the_session() -> None:
    session = started()
    session.refresh("first", "second", expires_at=LATER, at=T0, terms=terms(None, 0))
    session.collect_events()
    with pytest.raises(RefreshTokenReused):
        session.refresh("first", "third", expires_at=LATER, at=T0, terms=terms(None, 0))
    assert names(session) == ["RefreshTokenReuseDetected", "SessionRevoked"]
    # The thief's rotation and the owner's current token are both dead now.
    with pytest.raises(InvalidRefreshToken):
        session.refresh("second", "fourth", expires_at=LATER, at=T0, terms=terms(None, 0))


def test_an_unknown_token_is_refused_without_revoking() -> None:
    session = started()
    with pytest.raises(InvalidRefreshToken):
        session.refresh("forged", "x", expires_at=LATER, at=T0, terms=terms(None, 0))
    assert session.revoked_at is None


def test_an_expired_session_cannot_refresh() -> None:
    session = started()
    with pytest.raises(InvalidRefreshToken):
        session.refresh("first", "x", expires_at=LATER, at=LATER, terms=terms(None, 0))


def test_an_account_wide_revocation_ends_sessions_started_before_it() -> None:
    session = started()
    with pytest.raises(InvalidRefreshToken):
        session.refresh("first", "x", expires_at=LATER, at=T0, terms=terms(T0, 0))
    assert session.is_active(T0, terms(T0 - timedelta(seconds=1), 0))


def test_revoking_twice_records_once() -> None:
    session = started()
    session.revoke(T0, "logout")
    session.revoke(T0, "logout")
    assert names(session) == ["SessionStarted", "SessionRevoked"]


def test_a_session_dies_with_the_password_its_login_verified() -> None:
    session = started()  # bound to generation 0, the password set at registration
    assert session.is_active(T0, terms(None, 0))
    assert not session.is_active(T0, terms(None, 1))
    with pytest.raises(InvalidRefreshToken):
        session.refresh("first", "x", expires_at=LATER, at=T0, terms=terms(None, 1))


def test_an_accounts_terms_judge_a_session_as_the_account_itself_does() -> None:
    """A refresh judges its session by the account's terms alone (SessionTerms.admit); it must
    agree with Account.allows, which sees the Session, through every kind of change."""
    from domain.account import Account

    account = Account(email="ada@example.com", username="ada", password_hash="h", timestamp=T0)
    sessions = []

    def start(at: datetime) -> None:
        session = Session(
            id=uuid4(),
            account_id=account.id,
            refresh_token_hash="t",
            expires_at=at + timedelta(days=30),
            user_agent="test",
            ip="127.0.0.1",
            timestamp=at,
            password_generation=account.password_generation,
        )
        sessions.append(session)

    def agree(at: datetime) -> list[bool]:
        terms = account.session_terms()
        found = [terms.admit(s.id, s.started_at, s.password_generation) for s in sessions]
        assert found == [account.allows(s, at) for s in sessions]
        return found

    start(T0)
    start(T0 + timedelta(seconds=1))
    assert agree(T0 + timedelta(seconds=2)) == [True, True]
    # A password change made through the second session spares it alone.
    account.change_password("h2", T0 + timedelta(seconds=3), history_size=5)
    account.revoke_all_sessions(T0 + timedelta(seconds=3), keep=sessions[1].id)
    start(T0 + timedelta(seconds=4))
    assert agree(T0 + timedelta(seconds=5)) == [False, True, True]
    # Signing out everywhere ends every session started up to that instant, and no later one.
    account.revoke_all_sessions(T0 + timedelta(seconds=6))
    start(T0 + timedelta(seconds=6, microseconds=1))
    assert agree(T0 + timedelta(seconds=7)) == [False, False, False, True]
    account.grant_role("auditor", T0 + timedelta(seconds=8), "cli:root")
    assert account.session_terms().roles == ("auditor",)
    account.disable(T0 + timedelta(seconds=9), "cli:root")
    assert agree(T0 + timedelta(seconds=10)) == [False, False, False, False]
