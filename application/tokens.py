"""Opaque bearer secrets (verification, refresh): random, naming their owner, stored only hashed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from uuid import UUID

from application.ports import VersionedKey

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


class OneVersion:
    """A key that never rotates (tests, tools): version 1 only."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def current(self) -> tuple[int, bytes]:
        return 1, self._key

    def version(self, number: int) -> bytes | None:
        return self._key if number == 1 else None


class Purposed:
    """Every version of a key turned into a key for one purpose alone (HMAC of the purpose):
    a token tagged for one purpose (an app's refresh tokens) reads as forged for any other
    (tessera's own refresh, another app's)."""

    def __init__(self, key: bytes | VersionedKey, purpose: str) -> None:
        self._keys = versioned(key)
        self._purpose = purpose.encode("utf-8")

    def current(self) -> tuple[int, bytes]:
        number, key = self._keys.current()
        return number, self._derived(key)

    def version(self, number: int) -> bytes | None:
        key = self._keys.version(number)
        return None if key is None else self._derived(key)

    def _derived(self, key: bytes) -> bytes:
        return hmac.new(key, b"purpose|" + self._purpose, hashlib.sha256).digest()


def versioned(key: bytes | VersionedKey) -> VersionedKey:
    return OneVersion(key) if isinstance(key, bytes) else key


# A refresh token: its session, its turn in the session's chain, 128 random bits, and a tag
# that proves this service issued it. The tag is what lets a spent token be told from a forged
# one without keeping every spent token: a genuine token of an earlier turn is reuse. A token
# tagged by a later version of the key (after a rotation) names that version before its tag;
# version 1's tokens do not, as before versions were.
_TURN_BYTES = 4
_RANDOM_BYTES = 16
_VERSION_BYTES = 2
_TAG_BYTES = 16
_REFRESH_BYTES = 16 + _TURN_BYTES + _RANDOM_BYTES + _TAG_BYTES
_VERSIONED_BYTES = _REFRESH_BYTES + _VERSION_BYTES


@dataclass(frozen=True)
class RefreshToken:
    session_id: UUID
    turn: int
    version: int = 1  # of the key that tagged it


def issue_refresh_token(session_id: UUID, turn: int, key: bytes | VersionedKey) -> str:
    body = session_id.bytes + turn.to_bytes(_TURN_BYTES, "big") + secrets.token_bytes(_RANDOM_BYTES)
    return _tagged(body, *versioned(key).current())


def successor_of(token: str, presented: RefreshToken, key: bytes | VersionedKey) -> str:
    """The token `token` (of `presented`'s turn) is turned into: derived from it, so that the
    same successor can be given again within the reuse interval without ever being stored.
    Tagged by the current version of the key, so a session's tokens move to a new version at
    their next rotation."""
    version, current = versioned(key).current()
    seed = hmac.new(
        current,
        b"successor" + presented.turn.to_bytes(_TURN_BYTES, "big") + token.encode(),
        hashlib.sha256,
    ).digest()[:_RANDOM_BYTES]
    body = presented.session_id.bytes + (presented.turn + 1).to_bytes(_TURN_BYTES, "big") + seed
    return _tagged(body, version, current)


def read_refresh_token(token: str, key: bytes | VersionedKey) -> RefreshToken | None:
    """The session and turn a refresh token names, or None if this service did not issue it
    (another kind of token, one from before chains, a forgery, or one tagged by a version of
    the key that has been destroyed)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) == _REFRESH_BYTES:
        version = 1
    elif len(raw) == _VERSIONED_BYTES:
        version = int.from_bytes(raw[-_TAG_BYTES - _VERSION_BYTES : -_TAG_BYTES], "big")
        if version < 2:
            return None  # version 1 never names itself: not a token this service made
    else:
        return None
    tagging = versioned(key).version(version)
    if tagging is None:
        return None
    body, tag = raw[:-_TAG_BYTES], raw[-_TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(body, tagging)):
        return None
    return RefreshToken(
        session_id=UUID(bytes=body[:16]),
        turn=int.from_bytes(body[16 : 16 + _TURN_BYTES], "big"),
        version=version,
    )


def _tagged(body: bytes, version: int, key: bytes) -> str:
    if version > 1:
        body += version.to_bytes(_VERSION_BYTES, "big")
    raw = body + _tag(body, key)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _tag(body: bytes, key: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:_TAG_BYTES]
