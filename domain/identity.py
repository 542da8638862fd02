"""How email addresses and usernames are compared: the canonical forms that uniqueness is keyed on."""

from __future__ import annotations

import re
import unicodedata

from domain.errors import FieldError, Invalid

EMAIL_MAX_LENGTH = 254  # RFC 5321, 4.5.3.1.3: the longest address a path can carry
EMAIL_LOCAL_MAX_LENGTH = 64
USERNAME_PATTERN = re.compile(r"[a-z0-9_.-]{3,32}")


def _has_control_or_space(text: str) -> bool:
    return any(c.isspace() or unicodedata.category(c).startswith("C") for c in text)


def normalise_email(raw: str) -> str:
    """NFKC then lower case, so that visually identical addresses cannot become two accounts."""
    email = unicodedata.normalize("NFKC", raw).strip().lower()
    local, at, host = email.rpartition("@")
    if (
        not at
        or not local
        or "." not in host.strip(".")
        or ".." in host
        or len(email) > EMAIL_MAX_LENGTH
        or len(local) > EMAIL_LOCAL_MAX_LENGTH
        or _has_control_or_space(email)
    ):
        raise Invalid(FieldError("email", "format", "is not a valid email address"))
    return email


def normalise_username(raw: str) -> str:
    username = raw.strip().lower()
    if not USERNAME_PATTERN.fullmatch(username):
        raise Invalid(
            FieldError(
                "username",
                "format",
                "must be 3 to 32 characters of a-z, 0-9, underscore, dot or hyphen",
            )
        )
    return username


def is_email(login: str) -> bool:
    """Usernames cannot contain '@', so a login identifier with one is an email address."""
    return "@" in login
