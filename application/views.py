"""What the use cases return: plain data, never aggregates, never secrets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.account import Account


@dataclass(frozen=True)
class AccountView:
    id: UUID
    email: str
    username: str
    email_verified: bool
    display_name: str
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountView:
        return cls(
            id=account.id,
            email=account.email,
            username=account.username,
            email_verified=account.email_verified,
            display_name=account.display_name,
            created_at=account.created_on,
        )


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105  (RFC 6750 token type, not a secret)


@dataclass(frozen=True)
class MfaChallenge:
    """The password was right; the second factor is still owed, with this token."""

    mfa_token: str


@dataclass(frozen=True)
class Client:
    """Where a request came from, as far as the edge can tell; recorded on the session."""

    ip: str = ""
    user_agent: str = ""
