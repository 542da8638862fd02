"""SECRET_KEY as the key that wraps every other key, and SECRET_KEY_FALLBACKS, those it replaced.

Nothing is sealed, tagged or fingerprinted under SECRET_KEY itself: each person's data key (random)
and the service's own keys (for fingerprints, for the secrets events carry, for refresh-token
tags, for CSRF tokens; derived once, when first needed) are kept in the key table, wrapped
under it. So a
new SECRET_KEY changes no fingerprint, claim, sealed value or token: `tessera admin rekey` only
wraps the stored keys again under it (envelope encryption, as a KMS rotates its key-encryption
keys), and until then the fallbacks open what the old key wrapped.

A wrapped key names the key that wrapped it (its id: 4 bytes of an HMAC of that key), so opening
it takes one try, and a store whose keys no configured key opens is told apart from one that
simply has none yet.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_NONCE = 12  # NIST SP 800-38D's recommended IV length for GCM
_VERSION = b"\x01"
_ID = 4
# Wrapped before keys named their wrapper: a nonce and a 32-byte key's ciphertext with its tag.
_UNNAMED_LENGTH = _NONCE + 32 + 16


def derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


class WrongSecretKey(Exception):
    """No configured key (SECRET_KEY or a fallback) opens the store's keys."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "SECRET_KEY opens none of the keys this store holds: it is not the key the store was "
            "written with (set SECRET_KEY to that one, or keep it in SECRET_KEY_FALLBACKS while "
            "a new SECRET_KEY takes over, then run `tessera admin rekey`)" + detail
        )


@dataclass(frozen=True)
class _Wrapper:
    secret: bytes
    id: bytes
    aead: AESGCM


def _wrapper(secret: bytes) -> _Wrapper:
    key_id = hmac.new(secret, b"tessera key id", hashlib.sha256).digest()[:_ID]
    return _Wrapper(secret, key_id, AESGCM(derive(secret, b"tessera data keys")))


class Keyring:
    def __init__(self, current: bytes, fallbacks: Sequence[bytes] = ()) -> None:
        self._current = _wrapper(current)
        self._all = [self._current, *(_wrapper(k) for k in fallbacks if k != current)]

    @property
    def current(self) -> bytes:
        return self._current.secret

    def wrap(self, owner: UUID, key: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        sealed = self._current.aead.encrypt(nonce, key, owner.bytes)
        return _VERSION + self._current.id + nonce + sealed

    def unwrap(self, owner: UUID, wrapped: bytes) -> Unwrapped:
        """The key; WrongSecretKey when no configured key wrapped it."""
        if len(wrapped) == _UNNAMED_LENGTH:
            candidates, body = self._all, wrapped
        else:
            if wrapped[:1] != _VERSION:
                raise WrongSecretKey(f" (a wrapped key of an unknown format, for {owner})")
            named = wrapped[1 : 1 + _ID]
            candidates = [w for w in self._all if w.id == named]
            body = wrapped[1 + _ID :]
        for wrapper in candidates:
            try:
                key = wrapper.aead.decrypt(body[:_NONCE], body[_NONCE:], owner.bytes)
            except InvalidTag:
                continue
            current = wrapper is self._current and len(wrapped) != _UNNAMED_LENGTH
            return Unwrapped(key, wrapper.secret, rewrap=not current)
        raise WrongSecretKey


@dataclass(frozen=True)
class Unwrapped:
    key: bytes
    secret: bytes  # the SECRET_KEY (current or fallback) that had wrapped it
    rewrap: bool  # not yet wrapped under the current SECRET_KEY, as rekey leaves every key


def legacy_service_key(secret: bytes, name: str) -> bytes:
    """A service key as releases before the key table derived it from SECRET_KEY on every
    start: a store that used it keeps it (its fingerprints name its claims), made from the
    SECRET_KEY that opens the store's data keys."""
    if name == FINGERPRINTS:
        return derive(secret, b"tessera fingerprints")
    if name == SEALED_VALUES:
        return secret
    if name == REFRESH_TAGS:
        return hmac.new(secret, b"tessera: refresh token tags", hashlib.sha256).digest()
    if name == CSRF:
        return hmac.new(secret, b"tessera pages: csrf tokens", hashlib.sha256).digest()
    raise KeyError(name)


# The service's own keys, kept in the key table beside the people's.
FINGERPRINTS = "fingerprints"  # keyed hashes of emails, usernames, identities (claim ids)
SEALED_VALUES = "sealed values"  # secrets events carry: TOTP secrets, mailed tokens
REFRESH_TAGS = "refresh tags"  # the tag that tells a spent refresh token from a forgery
CSRF = "csrf"  # the pages' CSRF tokens
SERVICE_KEYS = (FINGERPRINTS, SEALED_VALUES, REFRESH_TAGS, CSRF)
