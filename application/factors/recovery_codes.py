"""MFA recovery codes: ten single-use codes, shown once, stored only as digests."""

from __future__ import annotations

import hashlib
import secrets

_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper, typed by hand
# 24 of 31 symbols: about 119 bits. OWASP ASVS 5.0 6.5.2 allows a plain digest (no salted,
# slow hash) for look-up secrets of at least 112 bits; 16 symbols (79 bits) fell short of it.
_LENGTH = 24
COUNT = 10


def new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(COUNT):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _LENGTH, 4)))
    return codes


def recovery_code_digest(code: str) -> str:
    """Case, spaces and dashes do not matter when a person types a code back."""
    canonical = "".join(c for c in code.lower() if c.isalnum())
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
