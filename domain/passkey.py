"""Passkeys (WebAuthn credentials) as an account holds them, and the signature-counter rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The longest name a person may give a passkey ("Ada's phone").
MAX_NAME = 64


@dataclass(frozen=True)
class Passkey:
    """One credential of an account: its id and public key as the authenticator gave them
    (base64url), its last signature counter, and what the person called it."""

    credential_id: str
    public_key: str
    sign_count: int
    name: str
    transports: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def from_state(cls, credential_id: str, state: dict[str, Any]) -> Passkey:
        last_used = state.get("last_used_at")
        return cls(
            credential_id=credential_id,
            public_key=state["public_key"],
            sign_count=state["sign_count"],
            name=state["name"],
            transports=tuple(state["transports"]),
            created_at=datetime.fromisoformat(state["created_at"]),
            last_used_at=None if last_used is None else datetime.fromisoformat(last_used),
        )

    def counter_went_back(self, presented: int) -> bool:
        """WebAuthn L3 6.1.1: a counter that does not grow (when either is non-zero) means two
        authenticators hold this key: a clone. Authenticators that keep no counter send 0."""
        return (presented != 0 or self.sign_count != 0) and presented <= self.sign_count


def passkey_state(
    public_key: str, sign_count: int, name: str, transports: list[str], created_at: datetime
) -> dict[str, Any]:
    """What the aggregate keeps of a passkey: JSON values only, so that the whole collection
    seals and opens as one value in a snapshot (see application/persistence/sealing.py)."""
    return {
        "public_key": public_key,
        "sign_count": sign_count,
        "name": name,
        "transports": list(transports),
        "created_at": created_at.isoformat(),
        "last_used_at": None,
    }
