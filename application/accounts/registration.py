"""Registering an account and verifying its email address."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from eventsourcing.persistence import IntegrityError

from application.persistence.event_log import ClaimHeld, EventLog, retried_on_conflict
from application.ports import Clock, PasswordHasher, SecretBox
from application.tokens import digest, issue_token, owner_of
from application.tracing import traced
from application.views import AccountView
from domain.account import Account, EmailClaim, UsernameClaim
from domain.errors import EmailTaken, InvalidToken, UsernameTaken
from domain.identity import normalise_email, normalise_username
from domain.password_policy import PasswordPolicy

C = TypeVar("C", EmailClaim, UsernameClaim)


@dataclass(frozen=True)
class RegistrationRules:
    policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    verification_ttl: timedelta = timedelta(hours=24)


class Registration:
    def __init__(
        self,
        log: EventLog,
        hasher: PasswordHasher,
        box: SecretBox,
        clock: Clock,
        rules: RegistrationRules,
    ) -> None:
        self._log = log
        self._hasher = hasher
        self._box = box
        self._clock = clock
        self._rules = rules

    @traced
    def register(self, email: str, username: str, password: str) -> AccountView:
        email = normalise_email(email)
        username = normalise_username(username)
        password = self._rules.policy.check(password, email=email, username=username)
        # A cheap early answer that spares an argon2 hash; the save below is what decides.
        self._refuse_claimed(email, username)
        now = self._clock.now()
        account = Account(
            email=email,
            username=username,
            password_hash=self._hasher.hash(password),
            timestamp=now,
        )
        self._request_verification(account)
        try:
            self._log.save(
                account,
                *self._claims(EmailClaim, "email", email, account, now),
                *self._claims(UsernameClaim, "username", username, account, now),
            )
        except IntegrityError:
            # Lost a race for the email or the username: say which, and record nothing.
            self._refuse_claimed(email, username)
            raise
        return AccountView.of(account)

    @traced
    @retried_on_conflict
    def verify_email(self, token: str) -> AccountView:
        account = self._log.find(owner_of(token), Account)
        if account is None:
            raise InvalidToken
        account.verify_email(digest(token), at=self._clock.now())
        self._log.save(account)
        return AccountView.of(account)

    @traced
    @retried_on_conflict
    def resend_verification(self, email: str) -> None:
        """Silent whatever the outcome, so the answer never tells whether an address is known."""
        claim = self._log.email_claim(normalise_email(email))
        if claim is None or claim.account_id is None:
            return
        account = self._log.find(claim.account_id, Account)
        if account is None or account.email_verified:
            return
        self._request_verification(account)
        self._log.save(account)

    def _request_verification(self, account: Account) -> None:
        token = issue_token(account.id)
        account.request_email_verification(
            token_hash=digest(token),
            sealed_token=self._box.seal(token),
            at=self._clock.now(),
            ttl=self._rules.verification_ttl,
        )

    def _claims(
        self, kind: type[C], what: str, value: str, account: Account, at: datetime
    ) -> list[C]:
        """The value's first claim, or the next generation after an erased account's released
        one (under each live version of the fingerprint key): either way, two registrations
        racing for one value make the same aggregate id and one of them loses."""
        try:
            return self._log.claims_made(kind, what, value, account.id, at)
        except ClaimHeld:  # taken since _refuse_claimed looked
            raise (EmailTaken if what == "email" else UsernameTaken) from None

    def _refuse_claimed(self, email: str, username: str) -> None:
        claim: EmailClaim | UsernameClaim | None = self._log.email_claim(email)
        if claim is not None and claim.held:
            raise EmailTaken
        claim = self._log.username_claim(username)
        if claim is not None and claim.held:
            raise UsernameTaken
