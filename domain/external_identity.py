"""Identities at other providers (OpenID Connect, OAuth 2.0) as an account holds them, and the
rules that need no I/O: a username derived from what the provider says, and whether the
provider's sign-in already was multi-factor."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.identity import USERNAME_PATTERN


@dataclass(frozen=True)
class ExternalIdentity:
    """One provider's subject linked to an account. `id` is ours (a UUID's text), so the API
    never has to name the provider's subject."""

    id: str
    provider: str
    subject: str
    email: str
    linked_at: datetime
    last_used_at: datetime | None

    @classmethod
    def from_state(cls, identity_id: str, state: dict[str, Any]) -> ExternalIdentity:
        last_used = state.get("last_used_at")
        return cls(
            id=identity_id,
            provider=state["provider"],
            subject=state["subject"],
            email=state["email"],
            linked_at=datetime.fromisoformat(state["linked_at"]),
            last_used_at=None if last_used is None else datetime.fromisoformat(last_used),
        )


def identity_state(provider: str, subject: str, email: str, at: datetime) -> dict[str, Any]:
    """What the aggregate keeps of an identity: JSON values only, so the whole collection
    seals and opens as one value in a snapshot (application/persistence/sealing.py)."""
    return {
        "provider": provider,
        "subject": subject,
        "email": email,
        "linked_at": at.isoformat(),
        "last_used_at": None,
    }


_NOT_USERNAME = re.compile(r"[^a-z0-9_.-]+")


def username_base(hints: Sequence[str | None]) -> str:
    """A username's stem from the provider's hints (preferred_username, login, the email's
    local part, the name), the first that leaves at least three characters once reduced to
    a-z, 0-9, underscore, dot and hyphen; "user" when none does."""
    for hint in hints:
        if not hint:
            continue
        text = unicodedata.normalize("NFKD", hint.split("@")[0]).encode("ascii", "ignore").decode()
        stem = _NOT_USERNAME.sub("-", text.lower()).strip("-._")[:28]
        if len(stem) >= 3:
            return stem
    return "user"


def username_candidates(base: str, suffixes: Iterator[str]) -> Iterator[str]:
    """The stem itself, then the stem with each suffix (numbers, then random ones): the first
    one not taken becomes the username."""
    yield base
    for suffix in suffixes:
        candidate = f"{base[: 32 - len(suffix) - 1]}-{suffix}"
        if USERNAME_PATTERN.fullmatch(candidate):
            yield candidate


# RFC 8176 method references, grouped by kind of factor (NIST SP 800-63B, 5.1): two kinds make a
# multi-factor sign-in. Left out, as no factor of their own: "user" (a user-presence test, the
# tap that any holder of the device makes), "kba" (knowledge-based questions, which 800-63B
# does not accept as an authenticator), and the signals "geo", "rba", "mca" and "wia" (where,
# how risky, over which channels, from which Windows session): they say nothing about who.
_KNOWLEDGE = {"pwd", "pin"}
_POSSESSION = {"otp", "hwk", "swk", "sms", "tel", "sc", "pop"}
_INHERENCE = {"fpt", "face", "iris", "retina", "vbm"}
# acr values that say multi-factor (OpenID PAPE; what many providers send).
MULTI_FACTOR_ACR = {
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor-physical",
    "phr",
    "phrh",
}


def multi_factor(amr: Sequence[str] | None, acr: str | None) -> bool:
    """Whether the provider says its sign-in used more than one factor (amr "mfa", or two
    kinds of factor, or a multi-factor acr)."""
    methods = set(amr or ())
    if "mfa" in methods:
        return True
    kinds = sum(bool(methods & kind) for kind in (_KNOWLEDGE, _POSSESSION, _INHERENCE))
    return kinds >= 2 or (acr is not None and acr in MULTI_FACTOR_ACR)
