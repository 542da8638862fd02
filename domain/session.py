"""The Session aggregate: one login, its rotating refresh token, and how it ends."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidRefreshToken, RefreshTokenReused


@dataclass(frozen=True)
class SessionTerms:
    """What an account says of its sessions: enough to judge one of them without loading it
    (a refresh judges its session from this and the session's own refresh-token chain)."""

    open: bool  # neither disabled nor erased
    cutoff: datetime | None  # sessions started at or before this are over, the kept one aside
    kept_session_id: UUID | None  # the one session a revocation spared
    password_generation: int
    roles: tuple[str, ...]
    # Each app the account consents to, and when that consent was granted (a consent withdrawn
    # and granted again is a new one).
    consents: tuple[tuple[str, datetime], ...] = ()

    def admit(self, session_id: UUID, started_at: datetime, bound_to: int) -> bool:
        """Whether a session started at `started_at`, bound to password generation `bound_to`,
        is still one the account allows: the one rule, whether the session is judged from its
        chain (a refresh) or from its own stream (a session from before chains, the trail)."""
        if not self.open:
            return False
        if session_id == self.kept_session_id:
            return True
        return (self.cutoff is None or started_at > self.cutoff) and (
            bound_to == self.password_generation
        )

    def consented(self, client_id: str, started_at: datetime) -> bool:
        """Whether an app's session started at `started_at` began under the consent the app
        holds now: one withdrawn since (granted again or not) has ended it for good."""
        granted = dict(self.consents).get(client_id)
        return granted is not None and granted <= started_at


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
        # An app's session (OpenID Provider): the client it was started for, by exchanging a
        # code, and the browser session that code came from. None for tessera's own sessions
        # (and every session from before apps).
        client_id: str | None = None,
        browser_session_id: UUID | None = None,
        scopes: list[str] | None = None,  # what the app's tokens carry, refreshed ones too
        audience: str | None = None,  # the API its access tokens are for (RFC 8707)
        # How the sign-in proved who it was (RFC 8176: pwd, otp, mfa, hwk), for the ID tokens of
        # the apps signed in from it. None for sessions from before it was recorded.
        amr: list[str] | None = None,
    ) -> None:
        self.account_id = account_id
        self.client_id = client_id
        self.browser_session_id = browser_session_id
        self.scopes = scopes
        self.audience = audience
        self.amr = amr
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

    def is_active(self, at: datetime, terms: SessionTerms) -> bool:
        """Live until revoked, expired, or no longer admitted by its account's terms (cut off
        by an account-wide revocation, outlived by the password its login verified, its
        account closed)."""
        return (
            self.revoked_at is None
            and at < self.expires_at
            and terms.admit(self.id, self.started_at, self.password_generation)
        )

    def refresh(
        self,
        presented_hash: str,
        new_hash: str,
        expires_at: datetime,
        at: datetime,
        terms: SessionTerms,
    ) -> None:
        """Spends the presented token and takes a new one.

        A token that was already spent means two parties hold it, and we cannot tell which is the
        thief: the session is revoked (records RefreshTokenReuseDetected and SessionRevoked, for
        the caller to save) and RefreshTokenReused raised.
        """
        if not self.is_active(at, terms):
            raise InvalidRefreshToken
        if presented_hash in self.spent_token_hashes:
            self.reuse_detected(at)
            raise RefreshTokenReused
        if not hmac.compare_digest(presented_hash, self.refresh_token_hash):
            raise InvalidRefreshToken
        self._session_refreshed(refresh_token_hash=new_hash, expires_at=expires_at, timestamp=at)

    def record_rotations(
        self, refresh_token_hash: str, expires_at: datetime, turn: int, at: datetime
    ) -> None:
        """What the log keeps of rotations made on the session's chain (outside the log): the
        token current at `turn` and the expiry it carries, at most once an hour."""
        self._session_refreshed(
            refresh_token_hash=refresh_token_hash, expires_at=expires_at, timestamp=at, turn=turn
        )

    @event("SessionRefreshed")
    def _session_refreshed(
        self,
        refresh_token_hash: str,
        expires_at: datetime,
        timestamp: datetime,
        turn: int | None = None,  # None: a rotation recorded in the log itself, before chains
    ) -> None:
        self.spent_token_hashes.append(self.refresh_token_hash)
        self.refresh_token_hash = refresh_token_hash
        self.expires_at = expires_at

    @event("RefreshTokenReuseDetected")
    def _refresh_token_reuse_detected(self, timestamp: datetime) -> None:
        pass

    def reuse_detected(self, at: datetime) -> None:
        """A spent token of this session came back (found by its chain): it ends here."""
        if self.revoked_at is None:
            self._refresh_token_reuse_detected(timestamp=at)
            self.revoke(at, reason="refresh_token_reuse")

    def revoke(self, at: datetime, reason: str) -> None:
        """Idempotent: ending an ended session records nothing."""
        if self.revoked_at is None:
            self._session_revoked(reason=reason, timestamp=at)

    @event("SessionRevoked")
    def _session_revoked(self, reason: str, timestamp: datetime) -> None:
        self.revoked_at = timestamp
        self.revocation_reason = reason
