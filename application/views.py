"""What the use cases return: plain data, never aggregates, never secrets."""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.account import ERASED, Account


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
class AccountState:
    """An account as it stood at `as_of`, for auditors: what it was, never its secrets."""

    id: UUID
    email: str
    username: str
    display_name: str
    email_verified: bool
    roles: tuple[str, ...]
    disabled: bool
    locked: bool  # as of `as_of`: a lock whose time was up by then reads as lifted
    locked_until: datetime | None  # None while locked: until an operator unlocks
    failed_logins: int
    mfa_enabled: bool
    sessions_revoked_at: datetime | None
    created_at: datetime
    version: int  # the last of the account's events applied
    as_of: datetime

    @classmethod
    def of(cls, account: Account, as_of: datetime) -> AccountState:
        locked = account.is_locked(as_of)
        return cls(
            id=account.id,
            email=account.email,
            username=account.username,
            display_name=account.display_name,
            email_verified=account.email_verified,
            roles=tuple(account.roles),
            disabled=account.disabled,
            locked=locked,
            locked_until=account.locked_until if locked else None,
            failed_logins=account.failed_logins,
            mfa_enabled=account.mfa_enabled,
            sessions_revoked_at=account.sessions_revoked_at,
            created_at=account.created_on,
            version=account.version,
            as_of=as_of,
        )

    def erased(self) -> AccountState:
        """As an auditor sees it once its person is forgotten: what happened stays, who it was
        reads as erased."""
        return replace(self, email=ERASED, username=ERASED, display_name=ERASED)


@dataclass(frozen=True, kw_only=True)
class TokenPair:
    access_token: str
    token_type: str  # "Bearer" (RFC 6750), named in each answer for the client
    expires_in: int
    refresh_token: str


@dataclass(frozen=True)
class MfaChallenge:
    """The password was right; the second factor is still owed, with this token."""

    mfa_token: str
    # Always true: how a client tells this answer from a token pair without guessing by shape.
    mfa_required: bool = True


@dataclass(frozen=True)
class Client:
    """Where a request came from, as far as the edge can tell; recorded on the session."""

    ip: str = ""
    user_agent: str = ""


def json_ready(value: Any) -> Any:
    """Plain JSON values from views and trail entries: times as ISO 8601, ids as strings,
    dataclasses as objects (in field order), tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
