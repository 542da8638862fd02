from __future__ import annotations

from uuid import uuid4

from application.tokens import digest, issue_token, owner_of


def test_a_token_names_its_owner_and_carries_256_random_bits() -> None:
    owner = uuid4()
    token = issue_token(owner)
    assert owner_of(token) == owner
    assert issue_token(owner) != token
    assert len(token) >= 64  # 48 bytes base64url encoded


def test_malformed_tokens_have_no_owner() -> None:
    for junk in ["", "abc", "!!!!", issue_token(uuid4())[:-4], "A" * 200]:
        assert owner_of(junk) is None


def test_only_a_digest_is_stored() -> None:
    token = issue_token(uuid4())
    assert token not in digest(token)
    assert len(digest(token)) == 64
