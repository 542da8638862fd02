"""AES-256-GCM sealing of secrets that events must carry (a verification token for the mailer)."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from application.ports import VersionedKey
from application.tokens import versioned

_NONCE_BYTES = 12  # NIST SP 800-38D's recommended IV length for GCM


class AesGcmBox:
    """Seals under the current version of the SEALED_VALUES key. A value sealed by a later
    version than 1 names it ("2." before the base64, whose alphabet has no dot); version 1's
    values do not, as before versions were."""

    def __init__(self, key: bytes | VersionedKey) -> None:
        self._keys = versioned(key)

    def seal(self, plaintext: str) -> str:
        version, key = self._keys.current()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), None)
        body = base64.urlsafe_b64encode(sealed).decode("ascii")
        return body if version == 1 else f"{version}.{body}"

    def open(self, sealed: str) -> str:
        version, body = sealed_version(sealed)
        key = self._keys.version(version)
        if key is None:
            raise ValueError(f"sealed under version {version} of the key, which is destroyed")
        raw = base64.urlsafe_b64decode(body)
        try:
            plain = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None)
        except InvalidTag as error:
            raise ValueError("sealed under another key, or altered") from error
        return plain.decode("utf-8")


def sealed_version(sealed: str) -> tuple[int, str]:
    """The version of the key a sealed value names, and the sealed bytes in base64."""
    number, dot, body = sealed.partition(".")
    if not dot:
        return 1, sealed
    if not (number.isascii() and number.isdigit()) or number[0] == "0" or int(number) < 2:
        raise ValueError("not a sealed value")
    return int(number), body
