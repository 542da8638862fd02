"""AES-256-GCM sealing of secrets that events must carry (a verification token for the mailer)."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12  # NIST SP 800-38D's recommended IV length for GCM


class AesGcmBox:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), None)
        return base64.urlsafe_b64encode(sealed).decode("ascii")

    def open(self, sealed: str) -> str:
        raw = base64.urlsafe_b64decode(sealed)
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None)
        except InvalidTag as error:
            raise ValueError("sealed under another key, or altered") from error
        return plain.decode("utf-8")
