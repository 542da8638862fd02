"""Session rules: rotation, reuse detection, expiry and revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.errors import InvalidRefreshToken, RefreshTokenReused
from domain.session import Session

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


def names(session: Session) -> list[str]:
    return [type(e).__name__ for e in session.collect_events()]


def test_refreshing_spends_the_token_and_takes_the_new_one() -> None:
    session = started()
    session.refresh(
        "first", "second", expires_at=LATER, at=T0, account_cutoff=None, password_generation=0
    )
    assert session.refresh_token_hash == "second"
    assert names(session) == ["SessionStarted", "SessionRefreshed"]


def test_a_spent_token_revokes_the_session() -> None:
    session = started()
    session.refresh(
        "first", "second", expires_at=LATER, at=T0, account_cutoff=None, password_generation=0
    )
    session.collect_events()
    with pytest.raises(RefreshTokenReused):
        session.refresh(
            "first", "third", expires_at=LATER, at=T0, account_cutoff=None, password_generation=0
        )
    assert names(session) == ["RefreshTokenReuseDetected", "SessionRevoked"]
    # The thief's rotation and the owner's current token are both dead now.
    with pytest.raises(InvalidRefreshToken):
        session.refresh(
            "second", "fourth", expires_at=LATER, at=T0, account_cutoff=None, password_generation=0
        )


def test_an_unknown_token_is_refused_without_revoking() -> None:
    session = started()
    with pytest.raises(InvalidRefreshToken):
        session.refresh(
            "forged", "x", expires_at=LATER, at=T0, account_cutoff=None, password_generation=0
        )
    assert session.revoked_at is None


def test_an_expired_session_cannot_refresh() -> None:
    session = started()
    with pytest.raises(InvalidRefreshToken):
        session.refresh(
            "first", "x", expires_at=LATER, at=LATER, account_cutoff=None, password_generation=0
        )


def test_an_account_wide_revocation_ends_sessions_started_before_it() -> None:
    session = started()
    with pytest.raises(InvalidRefreshToken):
        session.refresh(
            "first", "x", expires_at=LATER, at=T0, account_cutoff=T0, password_generation=0
        )
    assert session.is_active(T0, account_cutoff=T0 - timedelta(seconds=1), password_generation=0)


def test_revoking_twice_records_once() -> None:
    session = started()
    session.revoke(T0, "logout")
    session.revoke(T0, "logout")
    assert names(session) == ["SessionStarted", "SessionRevoked"]


def test_a_session_dies_with_the_password_its_login_verified() -> None:
    session = started()  # bound to generation 0, the password set at registration
    assert session.is_active(T0, account_cutoff=None, password_generation=0)
    assert not session.is_active(T0, account_cutoff=None, password_generation=1)
    with pytest.raises(InvalidRefreshToken):
        session.refresh(
            "first", "x", expires_at=LATER, at=T0, account_cutoff=None, password_generation=1
        )
