from __future__ import annotations

import base64
import math
from uuid import uuid4

from application.factors.recovery_codes import new_recovery_codes, recovery_code_digest
from application.tokens import (
    RefreshToken,
    digest,
    issue_refresh_token,
    issue_token,
    owner_of,
    read_refresh_token,
    successor_of,
)


def test_a_token_names_its_owner_and_carries_256_random_bits() -> None:
    owner = uuid4()
    token = issue_token(owner)
    assert owner_of(token) == owner
    assert issue_token(owner) != token
    assert len(token) >= 64  # 48 bytes base64url encoded


def test_malformed_tokens_have_no_owner() -> None:
    for junk in ["", "abc", "!!!!", issue_token(uuid4())[:-4], "A" * 200]:
        assert owner_of(junk) is None


KEY = b"k" * 32


def test_a_refresh_token_names_its_session_and_turn_and_carries_128_random_bits() -> None:
    session = uuid4()
    token = issue_refresh_token(session, 7, KEY)
    read = read_refresh_token(token, KEY)
    assert read is not None and (read.session_id, read.turn) == (session, 7)
    raw = base64.urlsafe_b64decode(token + "==")
    assert len(raw) == 16 + 4 + 16 + 16  # session, turn, 128 random bits, 128-bit tag
    others = {issue_refresh_token(session, 7, KEY) for _ in range(50)}
    assert len(others | {token}) == 51, "the same session and turn never give the same token"


def test_a_refresh_token_not_tagged_by_our_key_reads_as_none() -> None:
    session = uuid4()
    token = issue_refresh_token(session, 3, KEY)
    assert read_refresh_token(token, b"another key" * 3) is None
    raw = bytearray(base64.urlsafe_b64decode(token + "=="))
    for index in range(len(raw)):  # any flipped bit: the session, the turn, the randomness
        tampered = bytearray(raw)
        tampered[index] ^= 0x01
        forged = base64.urlsafe_b64encode(tampered).rstrip(b"=").decode()
        assert read_refresh_token(forged, KEY) is None, index
    for junk in ["", "abc", "!!!!", token[:-4], issue_token(session), "A" * 200]:
        assert read_refresh_token(junk, KEY) is None


def test_a_refresh_tokens_successor_is_derived_from_it_under_our_key() -> None:
    """What lets the reuse interval give the same successor again without storing it: the
    next turn's token is a keyed function of the presented one, and of nothing else."""
    key = b"k" * 32
    session = uuid4()
    token = issue_refresh_token(session, 3, key)
    presented = read_refresh_token(token, key)
    assert presented is not None
    following = successor_of(token, presented, key)
    assert following == successor_of(token, presented, key), "the same, given again"
    assert read_refresh_token(following, key) == RefreshToken(session, 4)
    another = issue_refresh_token(session, 3, key)
    other = read_refresh_token(another, key)
    assert other is not None and successor_of(another, other, key) != following
    assert successor_of(token, presented, b"x" * 32) != following, "unknowable without the key"


def test_only_a_digest_is_stored() -> None:
    token = issue_token(uuid4())
    assert token not in digest(token)
    assert len(digest(token)) == 64


def test_recovery_codes_carry_112_bits_so_a_plain_digest_may_store_them() -> None:
    """OWASP ASVS 5.0 6.5.2: look-up secrets under 112 bits need a salted password hash."""
    codes = new_recovery_codes()
    symbols = {c for code in codes for c in code if c != "-"}
    alphabet_size = 31  # lower-case letters and digits without 0 o 1 l i
    assert len(symbols) <= alphabet_size and symbols <= set("abcdefghjkmnpqrstuvwxyz23456789")
    for code in codes:
        canonical = code.replace("-", "")
        assert len(canonical) * math.log2(alphabet_size) >= 112, code
        assert len(code) <= 32  # what the login/mfa schema accepts
        # Typed back with other case and spacing, it is the same code.
        assert recovery_code_digest(code.upper().replace("-", " ")) == recovery_code_digest(code)
