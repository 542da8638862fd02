from __future__ import annotations

import pytest

from domain.errors import Invalid
from domain.identity import normalise_email, normalise_username
from domain.password_policy import PasswordPolicy


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Ada@Example.COM", "ada@example.com"),
        ("  ada@example.com ", "ada@example.com"),
        ("\uff41\uff44\uff41@example.com", "ada@example.com"),  # fullwidth letters fold under NFKC
    ],
)
def test_emails_compare_case_and_width_insensitively(raw: str, canonical: str) -> None:
    assert normalise_email(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "no-at-sign",
        "@example.com",
        "ada@",
        "ada@localhost",
        "a da@example.com",
        "ada@x..com",
        "a\x00@example.com",
    ],
)
def test_malformed_emails_are_refused(raw: str) -> None:
    with pytest.raises(Invalid) as refused:
        normalise_email(raw)
    assert refused.value.errors[0].field == "email"


def test_usernames_compare_case_insensitively() -> None:
    assert normalise_username("Ada.Lovelace_1") == "ada.lovelace_1"


@pytest.mark.parametrize("raw", ["ab", "a" * 33, "ada lovelace", "ada@home", "adá"])
def test_usernames_outside_the_alphabet_or_length_are_refused(raw: str) -> None:
    with pytest.raises(Invalid):
        normalise_username(raw)


def test_passwords_of_8_to_1024_characters_of_any_script_are_accepted() -> None:
    policy = PasswordPolicy()
    assert policy.check("пароль-密码-🔑") == "пароль-密码-🔑"
    assert policy.check("x" * 1024)


@pytest.mark.parametrize(
    ("password", "rule"), [("short", "min_length"), ("x" * 1025, "max_length")]
)
def test_passwords_out_of_bounds_name_the_rule(password: str, rule: str) -> None:
    with pytest.raises(Invalid) as refused:
        PasswordPolicy().check(password)
    assert refused.value.errors[0].rule == rule


def test_passwords_are_not_truncated() -> None:
    # Two passwords alike in their first 72 bytes (bcrypt's limit) must stay different.
    assert PasswordPolicy().check("a" * 72 + "1") != PasswordPolicy().check("a" * 72 + "2")


def test_common_passwords_are_refused_whatever_their_case() -> None:
    policy = PasswordPolicy(common=frozenset({"password123"}))
    with pytest.raises(Invalid) as refused:
        policy.check("PassWord123")
    assert refused.value.errors[0].rule == "common"


def test_passwords_containing_the_username_or_email_local_part_are_refused() -> None:
    policy = PasswordPolicy()
    with pytest.raises(Invalid) as refused:
        policy.check("my-Lovelace-secret", email="lovelace@example.com", username="ada_l")
    assert [e.rule for e in refused.value.errors] == ["contains_email"]
    with pytest.raises(Invalid):
        policy.check("ada_l is my name", email="x@example.com", username="ada_l")


def test_composition_rules_are_off_by_default_and_name_each_missing_class() -> None:
    assert PasswordPolicy().check("all lower case words")
    strict = PasswordPolicy(
        require_lower=True, require_upper=True, require_digit=True, require_symbol=True
    )
    with pytest.raises(Invalid) as refused:
        strict.check("alllowercase")
    assert {e.rule for e in refused.value.errors} == {
        "requires_upper",
        "requires_digit",
        "requires_symbol",
    }
    assert strict.check("Aa1!aaaa")
