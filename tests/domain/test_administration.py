"""Operators' changes to an account: roles, locks and disabling, each naming its operator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.account import Account
from domain.errors import AccountLocked, Invalid, InvalidCredentials
from tests.domain.test_account import POLICY, T0, event_names, registered


def test_granting_a_role_records_the_operator_once() -> None:
    account = registered()
    account.collect_events()
    assert account.grant_role("auditor", T0, operator="cli:root")
    assert not account.grant_role("auditor", T0, operator="cli:root")
    (event,) = account.collect_events()
    assert type(event).__name__ == "RoleGranted"
    assert (event.role, event.operator) == ("auditor", "cli:root")
    assert account.roles == ["auditor"]


def test_an_unknown_role_is_refused_and_records_nothing() -> None:
    account = registered()
    account.collect_events()
    with pytest.raises(Invalid) as refused:
        account.grant_role("root", T0, operator="cli:root")
    assert refused.value.errors[0].field == "role"
    assert event_names(account) == []


def test_revoking_a_role_ends_every_session_so_no_token_keeps_it() -> None:
    account = registered()
    account.grant_role("admin", T0, operator="cli:root")
    account.collect_events()
    assert account.revoke_role("admin", T0 + timedelta(minutes=1), operator="cli:root")
    assert event_names(account) == ["RoleRevoked", "AllSessionsRevoked"]
    assert account.roles == []
    assert account.sessions_revoked_at == T0 + timedelta(minutes=1)
    assert not account.revoke_role("admin", T0, operator="cli:root")


def test_a_disabled_account_ends_its_sessions_and_is_refused_like_a_wrong_password() -> None:
    account = registered()
    account.collect_events()
    assert account.disable(T0, operator="cli:root")
    assert event_names(account) == ["AccountDisabled", "AllSessionsRevoked"]
    with pytest.raises(InvalidCredentials):
        account.ensure_enabled()
    assert not account.disable(T0, operator="cli:root")
    assert account.enable(T0, operator="cli:root")
    account.ensure_enabled()
    assert event_names(account) == ["AccountEnabled"]


def test_an_operator_lock_holds_until_an_operator_lifts_it() -> None:
    account = registered()
    account.lock(T0, operator="cli:root")
    years_later = T0 + timedelta(days=3650)
    with pytest.raises(AccountLocked) as locked:
        account.ensure_not_locked(years_later)
    assert locked.value.retry_after is None
    # A password reset proves the mailbox, not the operator's consent: the lock stays.
    assert not account.unlock(years_later, reason="password_reset")
    assert account.is_locked(years_later)
    assert account.unlock(years_later, reason="operator", operator="cli:root")
    account.ensure_not_locked(years_later)


def test_an_operator_lock_does_not_lengthen_the_policy_s_next_lock() -> None:
    account = registered()
    account.lock(T0, operator="cli:root", until=T0 + timedelta(minutes=1))
    later = T0 + timedelta(minutes=2)
    for _ in range(POLICY.threshold):
        account.fail_login(later, POLICY)
    with pytest.raises(AccountLocked) as locked:
        account.ensure_not_locked(later)
    assert locked.value.until == later + POLICY.base


def test_replaying_administration_events_rebuilds_the_same_account() -> None:
    account = registered()
    account.grant_role("auditor", T0, operator="a")
    account.lock(T0, operator="a")
    account.disable(T0, operator="a")
    events = account.collect_events()
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Account)
    assert replayed.__dict__ == account.__dict__
