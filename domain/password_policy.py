"""Which passwords an account may have (NIST SP 800-63B, 3.1.1.2 and 5.1.1.2)."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from domain.errors import FieldError, Invalid


def normalise_password(password: str) -> str:
    """NFKC, so that one password typed on two keyboards hashes the same (NIST 800-63B 5.1.1.2)."""
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True)
class PasswordPolicy:
    # NIST: at least 8, and allow at least 64; the upper bound only stops hashing abuse.
    min_length: int = 8
    max_length: int = 1024
    # Lower-cased entries of a list of commonly used or breached passwords.
    common: frozenset[str] = field(default_factory=frozenset)
    # Composition rules: NIST advises against them; off unless an operator must have them.
    require_lower: bool = False
    require_upper: bool = False
    require_digit: bool = False
    require_symbol: bool = False

    def check(
        self, password: str, email: str = "", username: str = "", field: str = "password"
    ) -> str:
        """Returns the password as it will be hashed, or raises Invalid naming each broken rule."""
        normalised = normalise_password(password)
        errors = [
            FieldError(field, rule, message)
            for rule, message in self._broken(normalised, email, username)
        ]
        if errors:
            raise Invalid(*errors)
        return normalised

    def _broken(self, password: str, email: str, username: str) -> list[tuple[str, str]]:
        broken: list[tuple[str, str]] = []
        if len(password) < self.min_length:
            broken.append(("min_length", f"must be at least {self.min_length} characters"))
        if len(password) > self.max_length:
            broken.append(("max_length", f"must be at most {self.max_length} characters"))
        folded = password.casefold()
        if folded in self.common:
            broken.append(("common", "is one of the most commonly used passwords"))
        local_part = email.partition("@")[0]
        for name, value in (("username", username), ("email", local_part)):
            if len(value) >= 3 and value.casefold() in folded:
                broken.append((f"contains_{name}", f"must not contain your {name}"))
        composition = (
            (
                self.require_lower,
                "lower",
                any(c.islower() for c in password),
                "a lower-case letter",
            ),
            (
                self.require_upper,
                "upper",
                any(c.isupper() for c in password),
                "an upper-case letter",
            ),
            (self.require_digit, "digit", any(c.isdigit() for c in password), "a digit"),
            (
                self.require_symbol,
                "symbol",
                any(not c.isalnum() for c in password),
                "a symbol or space",
            ),
        )
        for required, rule, present, what in composition:
            if required and not present:
                broken.append((f"requires_{rule}", f"must contain {what}"))
        return broken
