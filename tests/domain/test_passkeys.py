"""Passkeys on the Account: registered, renamed, removed, used; a counter that goes back is a
clone, refused and recorded. No I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.account import Account
from domain.errors import InvalidPasskeyRegistration, PasskeyNotFound
from tests.domain.test_account import POLICY, T0, event_names, registered


def with_passkey(sign_count: int = 0) -> Account:
    account = registered()
    account.register_passkey("cred-1", "pk", sign_count, "Phone", ["internal"], at=T0)
    return account


def test_a_registered_passkey_is_listed_with_its_name_and_no_use_yet() -> None:
    account = with_passkey()
    (passkey,) = account.passkey_list()
    assert (passkey.credential_id, passkey.name, passkey.transports) == (
        "cred-1",
        "Phone",
        ("internal",),
    )
    assert passkey.created_at == T0 and passkey.last_used_at is None
    assert event_names(account) == ["Registered", "PasskeyRegistered"]


def test_the_same_credential_cannot_be_registered_twice() -> None:
    account = with_passkey()
    with pytest.raises(InvalidPasskeyRegistration):
        account.register_passkey("cred-1", "pk", 0, "Again", [], at=T0)


def test_renaming_records_only_a_change() -> None:
    account = with_passkey()
    account.rename_passkey("cred-1", "Phone", at=T0)
    account.rename_passkey("cred-1", "Laptop", at=T0)
    assert account.passkey("cred-1").name == "Laptop"
    assert event_names(account) == ["Registered", "PasskeyRegistered", "PasskeyRenamed"]


def test_a_removed_passkey_is_gone_and_an_unknown_one_is_not_found() -> None:
    account = with_passkey()
    account.remove_passkey("cred-1", at=T0)
    assert account.passkey_list() == []
    with pytest.raises(PasskeyNotFound):
        account.remove_passkey("cred-1", at=T0)
    with pytest.raises(PasskeyNotFound):
        account.rename_passkey("other", "x", at=T0)


def test_a_growing_counter_is_recorded_with_the_time_of_use() -> None:
    account = with_passkey(sign_count=3)
    used_at = T0 + timedelta(minutes=5)
    assert account.use_passkey("cred-1", 4, at=used_at, policy=POLICY)
    assert account.passkey("cred-1").sign_count == 4
    assert account.passkey("cred-1").last_used_at == used_at
    assert event_names(account)[-1] == "PasskeyUsed"


def test_authenticators_without_a_counter_always_send_zero_and_are_accepted() -> None:
    account = with_passkey(sign_count=0)
    assert account.use_passkey("cred-1", 0, at=T0, policy=POLICY)
    assert account.use_passkey("cred-1", 0, at=T0, policy=POLICY)


@pytest.mark.parametrize(("stored", "presented"), [(5, 5), (5, 4), (5, 0)])
def test_a_counter_that_went_back_is_a_clone_refused_and_counted_as_a_failure(
    stored: int, presented: int
) -> None:
    account = with_passkey(sign_count=stored)
    account.collect_events()
    assert not account.use_passkey("cred-1", presented, at=T0, policy=POLICY)
    assert event_names(account) == ["PasskeyCounterWentBack", "LoginFailed"]
    assert account.passkey("cred-1").sign_count == stored  # the clone stays refused
    assert account.failed_logins == 1


def test_an_erased_account_keeps_no_passkey() -> None:
    account = with_passkey()
    account.erase(T0, operator="self")
    assert account.passkeys == {}
