"""External identities on the Account: linked, used, unlinked (never the last way in); the
username stem and the multi-factor reading of amr/acr. No I/O."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

import pytest

from domain.account import NO_PASSWORD, Account
from domain.errors import IdentityNotFound, IdentityTaken, LastWayIn
from domain.external_identity import multi_factor, username_base, username_candidates
from tests.domain.test_account import T0, event_names, registered


def without_password() -> Account:
    return Account(email="ada@example.com", username="ada", password_hash=NO_PASSWORD, timestamp=T0)


def test_a_linked_identity_is_listed_and_found_by_provider_and_subject() -> None:
    account = registered()
    account.link_identity("id-1", "google", "sub-1", "ada@gmail.com", at=T0)
    (identity,) = account.identity_list()
    assert (identity.id, identity.provider, identity.subject, identity.email) == (
        "id-1",
        "google",
        "sub-1",
        "ada@gmail.com",
    )
    assert account.identity_for("google", "sub-1") == identity
    assert account.identity_for("github", "sub-1") is None
    assert event_names(account)[-1] == "IdentityLinked"


def test_one_identity_is_linked_once() -> None:
    account = registered()
    account.link_identity("id-1", "google", "sub-1", "a@b.example", at=T0)
    with pytest.raises(IdentityTaken):
        account.link_identity("id-2", "google", "sub-1", "a@b.example", at=T0)


def test_a_use_is_recorded_with_its_time() -> None:
    account = registered()
    account.link_identity("id-1", "google", "sub-1", "a@b.example", at=T0)
    account.use_identity("id-1", at=T0 + timedelta(minutes=1))
    assert account.identity("id-1").last_used_at == T0 + timedelta(minutes=1)
    assert event_names(account)[-1] == "IdentityUsed"


def test_the_last_way_in_is_never_unlinked() -> None:
    account = without_password()
    assert not account.has_password
    account.link_identity("id-1", "google", "sub-1", "a@b.example", at=T0)
    with pytest.raises(LastWayIn):
        account.unlink_identity("id-1", at=T0)
    account.link_identity("id-2", "github", "42", "a@b.example", at=T0)
    account.unlink_identity("id-1", at=T0)
    with pytest.raises(LastWayIn):
        account.unlink_identity("id-2", at=T0)
    account.register_passkey("cred", "pk", 0, "Phone", [], at=T0)
    account.unlink_identity("id-2", at=T0)
    assert account.identity_list() == []
    with pytest.raises(IdentityNotFound):
        account.unlink_identity("id-2", at=T0)


def test_an_account_with_a_password_may_unlink_its_only_identity() -> None:
    account = registered()
    account.link_identity("id-1", "google", "sub-1", "a@b.example", at=T0)
    account.unlink_identity("id-1", at=T0)
    assert event_names(account)[-1] == "IdentityUnlinked"


def test_erasure_forgets_the_identities() -> None:
    account = registered()
    account.link_identity("id-1", "google", "sub-1", "a@b.example", at=T0)
    account.erase(T0, operator="self")
    assert account.identity_list() == []


def test_the_provider_confirms_an_unverified_email_once() -> None:
    account = without_password()
    account.confirm_email_by_provider("google", at=T0)
    account.confirm_email_by_provider("google", at=T0)
    assert account.email_verified
    assert event_names(account).count("EmailVerified") == 1


@pytest.mark.parametrize(
    ("hints", "base"),
    [
        (["Ada.Lovelace", "ada@example.com"], "ada.lovelace"),
        ([None, "", "ab@example.com", "Ada Lovelace"], "ada-lovelace"),
        (["Zoë Ünïcode"], "zoe-unicode"),
        (["日本", None], "user"),
        (["x" * 60], "x" * 28),
    ],
)
def test_a_username_stem_is_taken_from_the_first_usable_hint(
    hints: list[str | None], base: str
) -> None:
    assert username_base(hints) == base


def test_candidates_start_with_the_stem_and_stay_valid_usernames() -> None:
    numbers = (str(n) for n in count(2))
    candidates = username_candidates("x" * 28, numbers)
    assert next(candidates) == "x" * 28
    second = next(candidates)
    assert second.endswith("-2") and len(second) <= 32


@pytest.mark.parametrize(
    ("amr", "acr", "expected"),
    [
        (["mfa"], None, True),
        (["pwd", "otp"], None, True),
        (["pwd"], None, False),
        (["hwk", "fpt"], None, True),
        (["swk", "pin"], None, True),
        (["sc", "pin"], None, True),
        (["pwd", "sms"], None, True),
        # User presence is a tap, not a factor: a security key touched is one factor.
        (["hwk", "user"], None, False),
        (["pwd", "user"], None, False),
        (["swk", "user"], None, False),
        (["user"], None, False),
        # Knowledge questions and context signals are no factor either.
        (["pwd", "kba"], None, False),
        (["otp", "kba"], None, False),
        (["pwd", "geo", "rba", "mca", "wia"], None, False),
        (["pwd", "pin"], None, False),  # two of one kind
        (["otp", "hwk"], None, False),
        (None, "http://schemas.openid.net/pape/policies/2007/06/multi-factor", True),
        (None, "1", False),
        ([], None, False),
    ],
)
def test_multi_factor_reads_amr_and_acr(
    amr: list[str] | None, acr: str | None, expected: bool
) -> None:
    assert multi_factor(amr, acr) is expected
