"""Which passwords an account may have (NIST SP 800-63B, 3.1.1.2)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from domain.errors import FieldError, Invalid


def normalise_password(password: str) -> str:
    """NFKC, so that one password typed on two keyboards hashes the same (NIST 800-63B 5.1.1.2)."""
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True)
class PasswordPolicy:
    # NIST: at least 8, and allow at least 64; the upper bound only stops hashing abuse.
    min_length: int = 8
    max_length: int = 1024

    def check(self, password: str, field: str = "password") -> str:
        """Returns the password as it will be hashed, or raises Invalid naming the broken rule."""
        normalised = normalise_password(password)
        length = len(normalised)
        if length < self.min_length:
            raise Invalid(
                FieldError(field, "min_length", f"must be at least {self.min_length} characters")
            )
        if length > self.max_length:
            raise Invalid(
                FieldError(field, "max_length", f"must be at most {self.max_length} characters")
            )
        return normalised
