"""The use cases against real stores: the embedded SQLite file and a real PostgreSQL cluster."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from pathlib import Path

import pytest

from application.views import Client
from domain.account import Account
from domain.errors import (
    EmailNotVerified,
    EmailTaken,
    Invalid,
    InvalidAccessToken,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    RefreshTokenReused,
    UsernameTaken,
)
from interfaces.container import Container
from tests.conftest import FakeClock, authenticated, event_count, refreshed, run_projections, shown

PASSWORD = "correct horse battery staple"
CLIENT = Client(ip="127.0.0.1", user_agent="pytest")


def mailed_token(container: Container, to: str) -> str:
    """Runs the mail projection and reads the newest link sent to `to` from its .eml file."""
    run_projections(container)
    tokens = []
    for path in sorted(
        (container.settings.data_path / "mail").glob("*.eml"), key=lambda p: p.stat().st_mtime
    ):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"] == to:
            text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            tokens += re.findall(r"/verify-email\?token=([A-Za-z0-9_-]+)", text)
    assert tokens, f"no verification mail to {to}"
    return tokens[-1]


def verified(container: Container, address: str = "ada@example.com", username: str = "ada") -> None:
    container.registration.register(address, username, PASSWORD)
    container.registration.verify_email(mailed_token(container, address))


def test_registration_records_the_account_and_mails_a_verification_link(
    container: Container,
) -> None:
    account = container.registration.register("Ada@Example.com", "Ada", PASSWORD)
    assert (account.email, account.username, account.email_verified) == (
        "ada@example.com",
        "ada",
        False,
    )
    stored = container.log.repository.get(account.id)
    assert isinstance(stored, Account)
    assert stored.password_hash.startswith("$argon2id$")
    token = mailed_token(container, "ada@example.com")
    mail_text = next((container.settings.data_path / "mail").glob("*.eml")).read_text()
    assert mail_text.count(f"{container.settings.public_url}/verify-email?token={token}") == 1


def test_the_verification_token_is_not_in_the_event_store_in_clear(container: Container) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    token = mailed_token(container, "ada@example.com")
    stored = container.log.recorder.select_notifications(start=1, limit=100)
    assert all(token.encode() not in n.state for n in stored)
    assert all(PASSWORD.encode() not in n.state for n in stored)


def test_a_second_account_with_the_same_email_in_another_case_is_refused(
    container: Container,
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    before = event_count(container)
    with pytest.raises(EmailTaken):
        container.registration.register("ADA@example.com", "someone", PASSWORD)
    with pytest.raises(UsernameTaken):
        container.registration.register("other@example.com", "ADA", PASSWORD)
    assert event_count(container) == before


def test_invalid_registrations_record_nothing(container: Container) -> None:
    for args in [
        ("bad", "ada", PASSWORD),
        ("ada@example.com", "a", PASSWORD),
        ("ada@example.com", "ada", "short"),
    ]:
        with pytest.raises(Invalid):
            container.registration.register(*args)
    assert event_count(container) == 0


def test_login_needs_a_verified_email_and_then_issues_tokens(container: Container) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    with pytest.raises(EmailNotVerified):
        container.login.log_in("ada", PASSWORD, CLIENT)
    container.registration.verify_email(mailed_token(container, "ada@example.com"))
    tokens = container.login.log_in("ADA@example.com", PASSWORD, CLIENT)
    claims = authenticated(container, tokens.access_token)
    assert claims.account_id == container.log.account_for_login("ada").id  # type: ignore[union-attr]
    assert tokens.expires_in == container.settings.access_token_ttl


def test_unknown_login_and_wrong_password_give_the_same_error(container: Container) -> None:
    verified(container)
    with pytest.raises(InvalidCredentials):
        container.login.log_in("nobody", PASSWORD, CLIENT)
    with pytest.raises(InvalidCredentials):
        container.login.log_in("ada", "wrong password!", CLIENT)


def test_a_wrong_password_records_login_failed(container: Container) -> None:
    verified(container)
    before = event_count(container)
    with pytest.raises(InvalidCredentials):
        container.login.log_in("ada", "wrong password!", CLIENT)
    assert event_count(container) == before + 1
    last = container.log.recorder.select_notifications(start=before + 1, limit=1)[0]
    assert last.topic.endswith("Account.LoginFailed")


def test_a_verification_token_works_once(container: Container) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    token = mailed_token(container, "ada@example.com")
    container.registration.verify_email(token)
    with pytest.raises(InvalidToken):
        container.registration.verify_email(token)


def test_a_verification_token_expires_after_24_hours(
    container: Container, clock: FakeClock
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    token = mailed_token(container, "ada@example.com")
    clock.advance(hours=24)
    with pytest.raises(InvalidToken):
        container.registration.verify_email(token)


def test_resending_supersedes_the_old_link_and_is_silent_for_unknown_addresses(
    container: Container,
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    first = mailed_token(container, "ada@example.com")
    container.registration.resend_verification("Ada@example.com")
    second = mailed_token(container, "ada@example.com")
    assert first != second
    before = event_count(container)
    container.registration.resend_verification("nobody@example.com")
    assert event_count(container) == before
    with pytest.raises(InvalidToken):
        container.registration.verify_email(first)
    container.registration.verify_email(second)


def test_refresh_rotates_and_reuse_ends_the_session(container: Container, clock: FakeClock) -> None:
    verified(container)
    first = container.login.log_in("ada", PASSWORD, CLIENT)
    second = refreshed(container, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    clock.advance(seconds=container.settings.refresh_reuse_interval)  # past the grace
    with pytest.raises(RefreshTokenReused):
        refreshed(container, first.refresh_token)
    # The whole session is over: the rotated token and its access tokens too.
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, second.refresh_token)
    with pytest.raises(InvalidAccessToken):
        authenticated(container, second.access_token)


def test_a_refresh_token_of_another_kind_is_refused(container: Container) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    verification_token = mailed_token(container, "ada@example.com")
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, verification_token)


def test_refresh_tokens_expire_when_idle(container: Container, clock: FakeClock) -> None:
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    clock.advance(seconds=container.settings.refresh_token_ttl)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, tokens.refresh_token)


def test_no_refresh_extends_a_session_past_its_maximum_age(
    container: Container, clock: FakeClock
) -> None:
    """Refreshed every half idle period, a session lives until SESSION_MAX_AGE, not longer."""
    verified(container)
    started = clock.now()
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    max_age = timedelta(seconds=container.settings.session_max_age)
    step = timedelta(seconds=container.settings.refresh_token_ttl // 2)
    while clock.now() - started < max_age:
        clock.advance(seconds=step.total_seconds())
        if clock.now() - started < max_age:
            tokens = refreshed(container, tokens.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, tokens.refresh_token)


def test_logout_stops_that_sessions_access_tokens_at_once(container: Container) -> None:
    verified(container)
    mine = container.login.log_in("ada", PASSWORD, CLIENT)
    other = container.login.log_in("ada", PASSWORD, CLIENT)
    claims = authenticated(container, mine.access_token)
    container.sessions.log_out(claims, refresh_token=None, all_sessions=False)
    with pytest.raises(InvalidAccessToken):
        authenticated(container, mine.access_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, mine.refresh_token)
    authenticated(container, other.access_token)  # the other device is still signed in


def test_logout_of_all_sessions_ends_every_device(container: Container) -> None:
    verified(container)
    devices = [container.login.log_in("ada", PASSWORD, CLIENT) for _ in range(3)]
    claims = authenticated(container, devices[0].access_token)
    container.sessions.log_out(claims, refresh_token=None, all_sessions=True)
    for tokens in devices:
        with pytest.raises(InvalidAccessToken):
            authenticated(container, tokens.access_token)
        with pytest.raises(InvalidRefreshToken):
            refreshed(container, tokens.refresh_token)
    fresh = container.login.log_in("ada", PASSWORD, CLIENT)
    authenticated(container, fresh.access_token)


def test_access_tokens_expire(container: Container, clock: FakeClock) -> None:
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    clock.advance(seconds=container.settings.access_token_ttl + 1)
    with pytest.raises(InvalidAccessToken):
        authenticated(container, tokens.access_token)


def test_profile_updates_are_events(container: Container) -> None:
    verified(container)
    account_id = container.log.account_for_login("ada").id  # type: ignore[union-attr]
    view = container.profile.update(account_id, "  Ada Lovelace ")
    assert view.display_name == "Ada Lovelace"
    assert shown(container, account_id).display_name == "Ada Lovelace"


def test_a_long_history_loads_from_a_snapshot(container: Container) -> None:
    verified(container)
    account_id = container.log.account_for_login("ada").id  # type: ignore[union-attr]
    for n in range(120):
        container.profile.update(account_id, f"name {n}")
    assert container.log.snapshots is not None
    snapshots = list(container.log.snapshots.get(account_id))
    assert snapshots, "no snapshot was taken"
    assert shown(container, account_id).display_name == "name 119"


def test_the_dev_keys_persist_across_restarts(container: Container, tmp_path: Path) -> None:
    from interfaces.container import build

    again = build(container.settings)
    try:
        assert again.signer.jwks() == container.signer.jwks()
    finally:
        again.close()
