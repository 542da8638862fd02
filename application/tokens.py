"""Opaque bearer secrets (verification, refresh): random, naming their owner, stored only hashed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from uuid import UUID

_SECRET_BYTES = 32  # 256 bits of randomness; the spec asks for at least 128


def issue_token(owner: UUID) -> str:
    """A token that carries its owner's id, so it is found without an index, and 256 random bits."""
    raw = owner.bytes + secrets.token_bytes(_SECRET_BYTES)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def owner_of(token: str) -> UUID | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 16 + _SECRET_BYTES:
        return None
    return UUID(bytes=raw[:16])


def digest(token: str) -> str:
    """The stored form. A fast hash suffices: the token has 256 bits of entropy, not a password's."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# A refresh token: its session, its turn in the session's chain, 128 random bits, and a tag
# that proves this service issued it. The tag is what lets a spent token be told from a forged
# one without keeping every spent token: a genuine token of an earlier turn is reuse.
_TURN_BYTES = 4
_RANDOM_BYTES = 16
_TAG_BYTES = 16
_REFRESH_BYTES = 16 + _TURN_BYTES + _RANDOM_BYTES + _TAG_BYTES


@dataclass(frozen=True)
class RefreshToken:
    session_id: UUID
    turn: int


def issue_refresh_token(session_id: UUID, turn: int, key: bytes) -> str:
    body = session_id.bytes + turn.to_bytes(_TURN_BYTES, "big") + secrets.token_bytes(_RANDOM_BYTES)
    raw = body + _tag(body, key)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def successor_of(token: str, presented: RefreshToken, key: bytes) -> str:
    """The token `token` (of `presented`'s turn) is turned into: derived from it, so that the
    same successor can be given again within the reuse interval without ever being stored."""
    seed = hmac.new(
        key,
        b"successor" + presented.turn.to_bytes(_TURN_BYTES, "big") + token.encode(),
        hashlib.sha256,
    ).digest()[:_RANDOM_BYTES]
    body = presented.session_id.bytes + (presented.turn + 1).to_bytes(_TURN_BYTES, "big") + seed
    raw = body + _tag(body, key)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def read_refresh_token(token: str, key: bytes) -> RefreshToken | None:
    """The session and turn a refresh token names, or None if this service did not issue it
    (another kind of token, one from before chains, or a forgery)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _REFRESH_BYTES:
        return None
    body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(body, key)):
        return None
    return RefreshToken(
        session_id=UUID(bytes=body[:16]), turn=int.from_bytes(body[16 : 16 + _TURN_BYTES], "big")
    )


def _tag(body: bytes, key: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:_TAG_BYTES]
