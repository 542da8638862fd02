"""The Account aggregate and the claims that keep email addresses and usernames unique."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import ClassVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import EmailNotVerified, InvalidToken

EMAIL_NAMESPACE = UUID("6f0b8c9e-3d5a-4c1e-9a57-2f4e8b1d0c31")
USERNAME_NAMESPACE = UUID("b2d7e4a1-8c3f-4e96-a0d5-7c1b9f2e6a48")


class EmailClaim(Aggregate):
    """An email address held by one account.

    Its id is derived from the normalised address, so two registrations of one address write the
    same aggregate id and the event store's optimistic concurrency lets exactly one of them win.
    """

    @staticmethod
    def create_id(email: str) -> UUID:
        return uuid5(EMAIL_NAMESPACE, email)

    @event("EmailClaimed")
    def __init__(self, email: str, account_id: UUID, timestamp: datetime) -> None:
        self.email = email
        self.account_id = account_id


class UsernameClaim(Aggregate):
    """A username held by one account; unique for the same reason as EmailClaim."""

    @staticmethod
    def create_id(username: str) -> UUID:
        return uuid5(USERNAME_NAMESPACE, username)

    @event("UsernameClaimed")
    def __init__(self, username: str, account_id: UUID, timestamp: datetime) -> None:
        self.username = username
        self.account_id = account_id


class Account(Aggregate):
    """A person's identity: credentials, verified email, profile.

    Login sessions are not recorded here but on Session aggregates of their own, so that logins
    and refreshes on many devices never contend for this stream (see README, "Sessions").
    """

    # Made by the @event decorators below; named here for projections and type checkers.
    EmailVerificationRequested: ClassVar[type[Aggregate.Event]]

    @event("Registered")
    def __init__(self, email: str, username: str, password_hash: str, timestamp: datetime) -> None:
        self.email = email
        self.username = username
        self.password_hash = password_hash
        self.email_verified = False
        self.display_name = ""
        self.verification_token_hash: str | None = None
        self.verification_expires_at: datetime | None = None
        self.failed_logins = 0
        self.sessions_revoked_at: datetime | None = None
        self.roles: list[str] = []

    # Email verification

    def request_email_verification(
        self, token_hash: str, sealed_token: str, at: datetime, ttl: timedelta
    ) -> None:
        """A newer request supersedes older ones: only the latest token's hash is kept."""
        self._email_verification_requested(
            email=self.email,
            token_hash=token_hash,
            sealed_token=sealed_token,
            expires_at=at + ttl,
            timestamp=at,
        )

    @event("EmailVerificationRequested")
    def _email_verification_requested(
        self,
        email: str,
        token_hash: str,
        sealed_token: str,
        expires_at: datetime,
        timestamp: datetime,
    ) -> None:
        # The sealed token is for the mail process alone; the account keeps only its hash.
        self.verification_token_hash = token_hash
        self.verification_expires_at = expires_at

    def verify_email(self, token_hash: str, at: datetime) -> None:
        if (
            self.email_verified
            or self.verification_token_hash is None
            or self.verification_expires_at is None
            or at >= self.verification_expires_at
            or not hmac.compare_digest(token_hash, self.verification_token_hash)
        ):
            raise InvalidToken
        self._email_verified(email=self.email, timestamp=at)

    @event("EmailVerified")
    def _email_verified(self, email: str, timestamp: datetime) -> None:
        self.email_verified = True
        self.verification_token_hash = None
        self.verification_expires_at = None

    # Login

    def ensure_may_log_in(self, require_verified_email: bool) -> None:
        """Asked only after the password matched, so it reveals nothing to a guesser."""
        if require_verified_email and not self.email_verified:
            raise EmailNotVerified

    def fail_login(self, at: datetime) -> None:
        self._login_failed(timestamp=at)

    @event("LoginFailed")
    def _login_failed(self, timestamp: datetime) -> None:
        self.failed_logins += 1

    def succeed_login(self, at: datetime) -> None:
        """Resets the count of consecutive failures; records nothing when there were none."""
        if self.failed_logins:
            self._failed_logins_reset(timestamp=at)

    @event("FailedLoginsReset")
    def _failed_logins_reset(self, timestamp: datetime) -> None:
        self.failed_logins = 0

    # Sessions

    def revoke_all_sessions(self, at: datetime) -> None:
        """Ends every session started up to `at`, without touching each Session's stream."""
        self._all_sessions_revoked(timestamp=at)

    @event("AllSessionsRevoked")
    def _all_sessions_revoked(self, timestamp: datetime) -> None:
        self.sessions_revoked_at = timestamp

    # Profile

    def update_profile(self, display_name: str, at: datetime) -> None:
        if display_name != self.display_name:
            self._profile_updated(display_name=display_name, timestamp=at)

    @event("ProfileUpdated")
    def _profile_updated(self, display_name: str, timestamp: datetime) -> None:
        self.display_name = display_name
