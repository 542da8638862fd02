"""Password policy, history, change, reset and lockout, against both stores."""

from __future__ import annotations

import email
import email.policy
import itertools
import re
from typing import Any

import pytest

from application.views import Client
from domain.account import Account
from domain.errors import (
    AccountLocked,
    Invalid,
    InvalidAccessToken,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidToken,
    WrongPassword,
)
from interfaces.container import Container, build
from interfaces.settings import load_settings
from tests.application.test_use_cases import PASSWORD, verified
from tests.conftest import (
    FAST_ARGON2,
    FakeClock,
    authenticated,
    event_count,
    refreshed,
    run_projections,
)

CLIENT = Client()
NEW = "a brand new passphrase"


def account_of(container: Container, login: str = "ada") -> Account:
    account = container.log.account_for_login(login)
    assert account is not None
    return account


def reset_link(container: Container, to: str) -> str:
    run_projections(container)
    links = []
    for path in sorted(
        (container.settings.data_path / "mail").glob("*.eml"), key=lambda p: p.stat().st_mtime
    ):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"] == to and "reset" in message["Subject"].lower():
            links += re.findall(
                r"(\S+/reset-password\?token=[A-Za-z0-9_-]+)",
                message.get_body(("plain",)).get_content(),
            )  # type: ignore[union-attr]
    assert links, "no reset mail"
    return links[-1]


def token_of(link: str) -> str:
    return link.rsplit("token=", 1)[1]


def refusal(error: Any) -> list[str]:
    return [e.rule for e in error.value.errors]


def test_registration_refuses_common_passwords_and_ones_containing_the_username(
    container: Container,
) -> None:
    with pytest.raises(Invalid) as refused:
        container.registration.register("ada@example.com", "ada", "Password123")
    assert refusal(refused) == ["common"]
    with pytest.raises(Invalid) as refused:
        container.registration.register("ada@example.com", "lovelace", "I am lovelace!")
    assert refusal(refused) == ["contains_username"]
    assert event_count(container) == 0


def test_the_shipped_list_has_at_least_10000_entries(container: Container) -> None:
    assert len(container.passwords._rules.policy.common) >= 10_000


def test_changing_the_password_keeps_this_session_and_ends_the_others(container: Container) -> None:
    verified(container)
    here = container.login.log_in("ada", PASSWORD, CLIENT)
    elsewhere = container.login.log_in("ada", PASSWORD, CLIENT)
    claims = authenticated(container, here.access_token)
    container.passwords.change(claims, PASSWORD, NEW)

    authenticated(container, here.access_token)
    refreshed(container, here.refresh_token)
    with pytest.raises(InvalidAccessToken):
        authenticated(container, elsewhere.access_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, elsewhere.refresh_token)
    with pytest.raises(InvalidCredentials):
        container.login.log_in("ada", PASSWORD, CLIENT)
    container.login.log_in("ada", NEW, CLIENT)


def test_changing_needs_the_current_password(container: Container) -> None:
    verified(container)
    claims = authenticated(container, container.login.log_in("ada", PASSWORD, CLIENT).access_token)
    before = event_count(container)
    with pytest.raises(WrongPassword):
        container.passwords.change(claims, "not my password", NEW)
    # Only the failure is recorded (counted towards the lock); the password is unchanged.
    assert event_count(container) == before + 1
    container.login.log_in("ada", PASSWORD, CLIENT)


def test_the_last_five_passwords_cannot_be_reused(container: Container, clock: FakeClock) -> None:
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    claims = authenticated(container, tokens.access_token)
    history = [PASSWORD] + [f"passphrase number {n}" for n in range(1, 5)]
    for old, new in itertools.pairwise(history):
        container.passwords.change(claims, old, new)
    for old in history:
        clock.advance(seconds=6)  # within the account's allowance of password checks
        with pytest.raises(Invalid) as refused:
            container.passwords.change(claims, history[-1], old)
        assert refusal(refused) == ["reused"]
    container.passwords.change(claims, history[-1], "passphrase number 5")
    container.passwords.change(claims, "passphrase number 5", PASSWORD)  # six back: allowed again


def test_forgot_password_mails_a_link_from_public_url(container: Container) -> None:
    verified(container)
    container.passwords.forget("ADA@example.com")
    link = reset_link(container, "ada@example.com")
    assert link.startswith(f"{container.settings.public_url}/reset-password?token=")
    stored = container.log.recorder.select_notifications(start=1, limit=100)
    assert all(token_of(link).encode() not in n.state for n in stored)


def test_forgot_password_for_an_unknown_address_records_nothing(container: Container) -> None:
    before = event_count(container)
    container.passwords.forget("nobody@example.com")
    assert event_count(container) == before


def test_a_reset_changes_the_password_lifts_the_lock_and_ends_every_session(
    container: Container,
) -> None:
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            container.login.log_in("ada", "wrong password!", CLIENT)
    with pytest.raises(AccountLocked):
        container.login.log_in("ada", PASSWORD, CLIENT)
    container.passwords.forget("ada@example.com")
    container.passwords.reset(token_of(reset_link(container, "ada@example.com")), NEW)

    with pytest.raises(InvalidAccessToken):
        authenticated(container, tokens.access_token)
    with pytest.raises(InvalidRefreshToken):
        refreshed(container, tokens.refresh_token)
    container.login.log_in("ada", NEW, CLIENT)


def test_a_reset_token_is_single_use(container: Container) -> None:
    verified(container)
    container.passwords.forget("ada@example.com")
    token = token_of(reset_link(container, "ada@example.com"))
    container.passwords.reset(token, NEW)
    with pytest.raises(InvalidToken):
        container.passwords.reset(token, "yet another passphrase")


def test_a_reset_token_expires_after_30_minutes(container: Container, clock: FakeClock) -> None:
    verified(container)
    container.passwords.forget("ada@example.com")
    token = token_of(reset_link(container, "ada@example.com"))
    clock.advance(minutes=30)
    with pytest.raises(InvalidToken):
        container.passwords.reset(token, NEW)


def test_a_newer_reset_request_invalidates_the_older_link(container: Container) -> None:
    verified(container)
    container.passwords.forget("ada@example.com")
    older = token_of(reset_link(container, "ada@example.com"))
    container.passwords.forget("ada@example.com")
    newer = token_of(reset_link(container, "ada@example.com"))
    with pytest.raises(InvalidToken):
        container.passwords.reset(older, NEW)
    container.passwords.reset(newer, NEW)


def test_a_reset_obeys_the_policy_and_the_history(container: Container) -> None:
    verified(container)
    container.passwords.forget("ada@example.com")
    token = token_of(reset_link(container, "ada@example.com"))
    before = event_count(container)
    with pytest.raises(Invalid) as refused:
        container.passwords.reset(token, PASSWORD)
    assert refusal(refused) == ["reused"]
    with pytest.raises(Invalid) as refused:
        container.passwords.reset(token, "qwertyuiop")
    assert refusal(refused) == ["common"]
    assert event_count(container) == before
    container.passwords.reset(token, NEW)  # the refusals did not spend the token


def test_tokens_of_one_purpose_do_not_serve_another(container: Container) -> None:
    from tests.application.test_use_cases import mailed_token

    container.registration.register("ada@example.com", "ada", PASSWORD)
    verification = mailed_token(container, "ada@example.com")
    with pytest.raises(InvalidToken):
        container.passwords.reset(verification, NEW)
    container.registration.verify_email(verification)
    container.passwords.forget("ada@example.com")
    reset = token_of(reset_link(container, "ada@example.com"))
    with pytest.raises(InvalidToken):
        container.registration.verify_email(reset)


def test_five_failures_lock_and_the_lock_lifts_with_time(
    container: Container, clock: FakeClock
) -> None:
    verified(container)
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            container.login.log_in("ada", "wrong password!", CLIENT)
    with pytest.raises(AccountLocked) as locked:
        container.login.log_in("ada", PASSWORD, CLIENT)
    assert 14 * 60 < locked.value.retry_after <= 15 * 60
    topics = [n.topic for n in container.log.recorder.select_notifications(start=1, limit=100)]
    assert topics[-1].endswith("Account.AccountLocked")
    clock.advance(minutes=15)
    container.login.log_in("ada", PASSWORD, CLIENT)


def test_a_locked_account_refuses_the_right_password_and_records_nothing(
    container: Container,
) -> None:
    verified(container)
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            container.login.log_in("ada", "wrong password!", CLIENT)
    before = event_count(container)
    with pytest.raises(AccountLocked):
        container.login.log_in("ada", PASSWORD, CLIENT)
    with pytest.raises(AccountLocked):
        container.login.log_in("ada", "wrong password!", CLIENT)
    assert event_count(container) == before


def test_hashes_made_with_old_parameters_are_rehashed_at_login(
    container: Container, clock: FakeClock
) -> None:
    verified(container)
    old_hash = account_of(container).password_hash
    assert "m=1024" in old_hash
    stronger = load_settings(
        {**FAST_ARGON2, "ARGON2_MEMORY_COST": "2048", "DATA_DIR": str(container.settings.data_path)}
        | (
            {"DATABASE_URL": container.settings.database_url}
            if container.settings.database_url
            else {}
        )
    )
    upgraded = build(stronger, clock=clock)
    try:
        upgraded.login.log_in("ada", PASSWORD, CLIENT)
        new_hash = account_of(upgraded).password_hash
        assert "m=2048" in new_hash
        topics = [n.topic for n in upgraded.log.recorder.select_notifications(start=1, limit=100)]
        assert any(t.endswith("Account.PasswordRehashed") for t in topics)
        upgraded.login.log_in("ada", PASSWORD, CLIENT)  # and the new hash works
    finally:
        upgraded.close()
