"""Account rules, given events and commands, with no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.account import Account, EmailClaim, UsernameClaim
from domain.errors import EmailNotVerified, InvalidToken

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def registered() -> Account:
    return Account(email="ada@example.com", username="ada", password_hash="h", timestamp=T0)


def event_names(account: Account) -> list[str]:
    return [type(e).__name__ for e in account.collect_events()]


def test_registering_records_registered_with_the_given_time() -> None:
    account = registered()
    (event,) = account.collect_events()
    assert type(event).__name__ == "Registered"
    assert event.timestamp == T0
    assert not account.email_verified


def test_the_latest_verification_token_verifies_the_email() -> None:
    account = registered()
    account.request_email_verification("hash-1", "sealed", at=T0, ttl=timedelta(hours=24))
    account.verify_email("hash-1", at=T0 + timedelta(hours=1))
    assert account.email_verified
    assert event_names(account) == ["Registered", "EmailVerificationRequested", "EmailVerified"]


def test_a_verification_token_works_once() -> None:
    account = registered()
    account.request_email_verification("hash-1", "sealed", at=T0, ttl=timedelta(hours=24))
    account.verify_email("hash-1", at=T0)
    with pytest.raises(InvalidToken):
        account.verify_email("hash-1", at=T0)


def test_an_expired_verification_token_is_refused() -> None:
    account = registered()
    account.request_email_verification("hash-1", "sealed", at=T0, ttl=timedelta(hours=24))
    with pytest.raises(InvalidToken):
        account.verify_email("hash-1", at=T0 + timedelta(hours=24))
    assert not account.email_verified


def test_a_newer_verification_request_supersedes_the_older_token() -> None:
    account = registered()
    account.request_email_verification("old", "sealed", at=T0, ttl=timedelta(hours=24))
    account.request_email_verification("new", "sealed", at=T0, ttl=timedelta(hours=24))
    with pytest.raises(InvalidToken):
        account.verify_email("old", at=T0)
    account.verify_email("new", at=T0)


def test_a_wrong_token_is_refused_and_records_nothing() -> None:
    account = registered()
    account.request_email_verification("hash-1", "sealed", at=T0, ttl=timedelta(hours=24))
    account.collect_events()
    with pytest.raises(InvalidToken):
        account.verify_email("other", at=T0)
    assert account.collect_events() == []


def test_an_unverified_account_may_not_log_in_unless_the_operator_allows_it() -> None:
    account = registered()
    with pytest.raises(EmailNotVerified):
        account.ensure_may_log_in(require_verified_email=True)
    account.ensure_may_log_in(require_verified_email=False)


def test_failed_logins_count_up_and_a_success_resets_them() -> None:
    account = registered()
    account.fail_login(T0)
    account.fail_login(T0)
    assert account.failed_logins == 2
    account.succeed_login(T0)
    assert account.failed_logins == 0
    assert event_names(account)[-3:] == ["LoginFailed", "LoginFailed", "FailedLoginsReset"]


def test_a_success_with_no_failures_records_nothing() -> None:
    account = registered()
    account.collect_events()
    account.succeed_login(T0)
    assert account.collect_events() == []


def test_an_unchanged_profile_records_nothing() -> None:
    account = registered()
    account.update_profile("Ada", T0)
    account.update_profile("Ada", T0)
    assert event_names(account) == ["Registered", "ProfileUpdated"]


def test_replaying_the_events_rebuilds_the_same_account() -> None:
    account = registered()
    account.request_email_verification("hash-1", "sealed", at=T0, ttl=timedelta(hours=24))
    account.verify_email("hash-1", at=T0)
    account.fail_login(T0)
    account.update_profile("Ada", T0)
    account.revoke_all_sessions(T0)
    events = account.collect_events()
    replayed = None
    for e in events:
        replayed = e.mutate(replayed)
    assert replayed is not None
    assert vars(replayed) == vars(account)


def test_claims_are_keyed_by_the_normalised_value() -> None:
    a = EmailClaim(email="ada@example.com", account_id=registered().id, timestamp=T0)
    assert a.id == EmailClaim.create_id("ada@example.com")
    assert UsernameClaim.create_id("ada") != EmailClaim.create_id("ada")
