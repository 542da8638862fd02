"""The Session aggregate: one login, its rotating refresh token, and how it ends."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidRefreshToken, RefreshTokenReused


class Session(Aggregate):
    """A login on one device. Each has its own short stream, so devices never contend."""

    # Made by the @event decorators below; named here for projections and type checkers.
    SessionStarted: ClassVar[type[Any]]

    @event("SessionStarted")
    def __init__(
        self,
        id: UUID,  # chosen by the caller: the refresh token names its session
        account_id: UUID,
        refresh_token_hash: str,
        expires_at: datetime,
        user_agent: str,
        ip: str,
        timestamp: datetime,
        password_generation: int = 0,  # of the password the login verified
    ) -> None:
        self.account_id = account_id
        self.password_generation = password_generation
        self.refresh_token_hash = refresh_token_hash
        self.spent_token_hashes: list[str] = []
        self.expires_at = expires_at
        self.user_agent = user_agent
        self.ip = ip
        self.revoked_at: datetime | None = None
        self.revocation_reason: str | None = None

    @property
    def started_at(self) -> datetime:
        return self.created_on

    def is_active(
        self, at: datetime, account_cutoff: datetime | None, password_generation: int
    ) -> bool:
        """Live until revoked, expired, cut off by an account-wide revocation, or outlived by
        the password its login verified (a login that raced a password change and lost)."""
        return (
            self.revoked_at is None
            and at < self.expires_at
            and (account_cutoff is None or self.started_at > account_cutoff)
            and password_generation == self.password_generation
        )

    def refresh(
        self,
        presented_hash: str,
        new_hash: str,
        expires_at: datetime,
        at: datetime,
        account_cutoff: datetime | None,
        password_generation: int,
    ) -> None:
        """Spends the presented token and takes a new one.

        A token that was already spent means two parties hold it, and we cannot tell which is the
        thief: the session is revoked (records RefreshTokenReuseDetected and SessionRevoked, for
        the caller to save) and RefreshTokenReused raised.
        """
        if not self.is_active(at, account_cutoff, password_generation):
            raise InvalidRefreshToken
        if presented_hash in self.spent_token_hashes:
            self._refresh_token_reuse_detected(timestamp=at)
            self.revoke(at, reason="refresh_token_reuse")
            raise RefreshTokenReused
        if not hmac.compare_digest(presented_hash, self.refresh_token_hash):
            raise InvalidRefreshToken
        self._session_refreshed(refresh_token_hash=new_hash, expires_at=expires_at, timestamp=at)

    @event("SessionRefreshed")
    def _session_refreshed(
        self, refresh_token_hash: str, expires_at: datetime, timestamp: datetime
    ) -> None:
        self.spent_token_hashes.append(self.refresh_token_hash)
        self.refresh_token_hash = refresh_token_hash
        self.expires_at = expires_at

    @event("RefreshTokenReuseDetected")
    def _refresh_token_reuse_detected(self, timestamp: datetime) -> None:
        pass

    def revoke(self, at: datetime, reason: str) -> None:
        """Idempotent: ending an ended session records nothing."""
        if self.revoked_at is None:
            self._session_revoked(reason=reason, timestamp=at)

    @event("SessionRevoked")
    def _session_revoked(self, reason: str, timestamp: datetime) -> None:
        self.revoked_at = timestamp
        self.revocation_reason = reason
