"""Opaque bearer secrets (verification, refresh): random, naming their owner, stored only hashed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
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
