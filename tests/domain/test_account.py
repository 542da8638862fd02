"""Account rules, given events and commands, with no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain.account import ERASED, Account, EmailClaim, UsernameClaim
from domain.errors import (
    AccountLocked,
    EmailNotVerified,
    InvalidMfaCode,
    InvalidToken,
    MfaNotEnabled,
)
from domain.lockout import LockoutPolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = LockoutPolicy(threshold=5, base=timedelta(minutes=15), ceiling=timedelta(hours=24))


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
    account.fail_login(T0, POLICY)
    account.fail_login(T0, POLICY)
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
    for _ in range(5):
        account.fail_login(T0, POLICY)
    account.update_profile("Ada", T0)
    account.change_password("h2", T0, history_size=5)
    account.request_password_reset("r", "sealed", at=T0, ttl=timedelta(minutes=30))
    account.reset_password("r", "h3", at=T0, history_size=5)
    account.rehash_password("h3b", T0)
    account.revoke_all_sessions(T0)
    events = account.collect_events()
    replayed = None
    for e in events:
        replayed = e.mutate(replayed)
    assert replayed is not None
    assert vars(replayed) == vars(account)


def test_claims_are_named_by_the_fingerprint_and_hold_no_value() -> None:
    a = EmailClaim(id=EmailClaim.id_for("f1"), account_id=registered().id, timestamp=T0)
    assert a.id == EmailClaim.id_for("f1")
    assert UsernameClaim.id_for("f1") != EmailClaim.id_for("f1")
    (claimed,) = a.collect_events()
    assert not {"email", "username", "fingerprint"} & set(vars(claimed))


def test_a_released_claim_is_taken_over_by_a_new_account_once() -> None:
    claim = EmailClaim(id=EmailClaim.id_for("f1"), account_id=registered().id, timestamp=T0)
    with pytest.raises(ValueError, match="held"):
        claim.take_over(registered().id, T0)
    claim.release(T0)
    assert not claim.held
    newcomer = registered().id
    claim.take_over(newcomer, T0)
    assert claim.account_id == newcomer
    assert event_names(claim) == ["EmailClaimed", "Released", "TakenOver"]  # type: ignore[arg-type]


def test_erasing_ends_every_session_and_names_only_who_asked() -> None:
    account = registered()
    account.update_profile("Ada", T0)
    assert account.erase(T0, "self")
    assert not account.erase(T0, "self")  # once
    events = account.collect_events()
    assert [type(e).__name__ for e in events][-2:] == ["AllSessionsRevoked", "AccountErased"]
    assert set(vars(events[-1])) == {"originator_id", "originator_version", "operator", "timestamp"}
    assert (account.email, account.username, account.display_name) == (ERASED,) * 3
    assert account.erased and account.disabled and account.sessions_revoked_at == T0


def test_five_failures_lock_the_account_for_15_minutes() -> None:
    account = registered()
    for _ in range(4):
        account.fail_login(T0, POLICY)
    account.ensure_not_locked(T0)
    account.fail_login(T0, POLICY)
    with pytest.raises(AccountLocked) as locked:
        account.ensure_not_locked(T0 + timedelta(minutes=14))
    assert locked.value.until == T0 + timedelta(minutes=15)
    account.ensure_not_locked(T0 + timedelta(minutes=15))  # lifted by time
    assert event_names(account)[-2:] == ["LoginFailed", "AccountLocked"]


def test_each_repeated_lock_doubles_until_the_ceiling() -> None:
    account = registered()
    at = T0
    lengths = []
    for _ in range(9):
        for _ in range(5):
            account.fail_login(at, POLICY)
        assert account.locked_until is not None
        lengths.append(account.locked_until - at)
        at = account.locked_until
    assert lengths[:4] == [timedelta(minutes=m) for m in (15, 30, 60, 120)]
    assert max(lengths) == timedelta(hours=24)


def test_a_successful_login_resets_the_backoff() -> None:
    account = registered()
    for _ in range(5):
        account.fail_login(T0, POLICY)
    account.succeed_login(T0 + timedelta(hours=1))
    for _ in range(5):
        account.fail_login(T0 + timedelta(hours=1), POLICY)
    assert account.locked_until == T0 + timedelta(hours=1, minutes=15)


def test_a_password_reset_lifts_the_lock_and_ends_all_sessions() -> None:
    account = registered()
    for _ in range(5):
        account.fail_login(T0, POLICY)
    account.request_password_reset("r", "sealed", at=T0, ttl=timedelta(minutes=30))
    account.collect_events()
    account.reset_password("r", "new-hash", at=T0, history_size=5)
    account.ensure_not_locked(T0)
    assert account.sessions_revoked_at == T0
    assert event_names(account) == ["PasswordChanged", "AccountUnlocked", "AllSessionsRevoked"]


def test_a_reset_token_is_single_use_expires_and_is_superseded() -> None:
    account = registered()
    account.request_password_reset("old", "sealed", at=T0, ttl=timedelta(minutes=30))
    account.request_password_reset("new", "sealed", at=T0, ttl=timedelta(minutes=30))
    with pytest.raises(InvalidToken):
        account.reset_password("old", "h", at=T0, history_size=5)
    with pytest.raises(InvalidToken):
        account.reset_password("new", "h", at=T0 + timedelta(minutes=30), history_size=5)
    account.reset_password("new", "h", at=T0, history_size=5)
    with pytest.raises(InvalidToken):
        account.reset_password("new", "h2", at=T0, history_size=5)


def test_a_verification_token_cannot_reset_a_password() -> None:
    account = registered()
    account.request_email_verification("v", "sealed", at=T0, ttl=timedelta(hours=24))
    with pytest.raises(InvalidToken):
        account.reset_password("v", "h", at=T0, history_size=5)


def test_password_history_keeps_the_last_n_hashes() -> None:
    account = registered()
    for n in range(1, 8):
        account.change_password(f"h{n}", T0, history_size=5)
    assert account.recent_password_hashes == ["h7", "h6", "h5", "h4", "h3"]


def test_a_guess_behind_a_session_counts_toward_the_same_lock_and_names_its_command() -> None:
    account = registered()
    for _ in range(4):
        account.fail_login(T0, POLICY)
    account.fail_login(T0, POLICY, factor="totp", command="disable_mfa")
    assert account.locked_until == T0 + timedelta(minutes=15)
    failed = [e for e in account.collect_events() if type(e).__name__ == "LoginFailed"]
    assert [(e.factor, e.command) for e in failed][-2:] == [
        ("password", "login"),
        ("totp", "disable_mfa"),
    ]


def test_a_login_failure_recorded_before_commands_were_named_replays_as_a_sign_in() -> None:
    account = registered()
    account.fail_login(T0, POLICY)
    (created, failed) = account.collect_events()
    del failed.__dict__["command"]  # as an event stored before the field existed
    replayed = failed.mutate(created.mutate(None))
    assert replayed is not None and replayed.failed_logins == 1


def test_a_stream_with_an_app_session_started_event_still_loads() -> None:
    """No command records AppSessionStarted any longer (issue #22); streams that hold it load,
    and the session counts under the app's consent as it did."""
    account = registered()
    account.grant_consent("client-1", ["openid"], T0)
    session_id = uuid4()
    account._app_session_started(
        client_id="client-1", session_id=session_id, forget_before=T0, timestamp=T0
    )
    account.revoke_consent("client-1", T0 + timedelta(days=1))
    events = account.collect_events()
    assert [type(e).__name__ for e in events][-2:] == ["AppSessionStarted", "ConsentRevoked"]
    replayed = None
    for e in events[:-1]:
        replayed = e.mutate(replayed)
    assert replayed is not None
    assert replayed.consents["client-1"]["sessions"] == {str(session_id): T0.isoformat()}
    replayed = events[-1].mutate(replayed)
    assert vars(replayed) == vars(account) and "client-1" not in account.consented_clients()


def test_renewed_recovery_codes_replace_the_old_ones() -> None:
    account = registered()
    account._mfa_enrollment_started(sealed_secret="s", timestamp=T0)
    account.enable_mfa(1, ["old-1", "old-2"], T0)
    account.use_recovery_code("old-1", T0)
    account.renew_recovery_codes(["new-1", "new-2"], T0)
    assert account.recovery_code_hashes == ["new-1", "new-2"]
    with pytest.raises(InvalidMfaCode):
        account.use_recovery_code("old-2", T0)
    assert event_names(account)[-1] == "RecoveryCodesRenewed"


def test_recovery_codes_cannot_be_renewed_without_mfa() -> None:
    with pytest.raises(MfaNotEnabled):
        registered().renew_recovery_codes(["new"], T0)


def test_the_next_holder_of_a_released_value_gets_a_claim_of_its_own() -> None:
    """Nothing in either claim's history names the other's account: a store copied without
    SECRET_KEY does not link an erased account to the next owner of its address."""
    first = EmailClaim.made("f1", registered().id, T0)
    assert (first.id, first.generation) == (EmailClaim.id_for("f1"), 0)
    with pytest.raises(ValueError, match="held"):
        EmailClaim.made("f1", registered().id, T0, after=first)
    first.release(T0)
    newcomer = registered().id
    second = EmailClaim.made("f1", newcomer, T0, after=first)
    assert second.id == EmailClaim.id_for("f1", 1) != first.id
    assert second.generation == 1 and second.account_id == newcomer
    assert event_names(first) == ["EmailClaimed", "Released"]  # type: ignore[arg-type]
    second.release(T0)
    assert EmailClaim.made("f1", newcomer, T0, after=second).generation == 2
