"""Changing a password, and resetting a forgotten one through a mailed link."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from application.factors.reauthentication import Proof, Reauthentication
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import AccessClaims, Clock, PasswordHasher, SecretBox
from application.sessions.lifecycle import Sessions
from application.tokens import digest, issue_token, owner_of
from application.tracing import traced
from domain.account import Account
from domain.errors import AccountNotFound, FieldError, Invalid, InvalidToken
from domain.identity import normalise_email
from domain.password_policy import PasswordPolicy


@dataclass(frozen=True)
class PasswordRules:
    policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    history_size: int = 5  # a new password may not be any of the last N
    reset_ttl: timedelta = timedelta(minutes=30)


class Passwords:
    def __init__(
        self,
        log: EventLog,
        hasher: PasswordHasher,
        box: SecretBox,
        sessions: Sessions,
        clock: Clock,
        rules: PasswordRules,
        reauthentication: Reauthentication,
    ) -> None:
        self._log = log
        self._hasher = hasher
        self._box = box
        self._sessions = sessions
        self._clock = clock
        self._rules = rules
        self._reauthentication = reauthentication

    @traced
    @retried_on_conflict
    def change(
        self,
        claims: AccessClaims,
        current_password: str,
        new_password: str,
        code: str | None = None,
    ) -> None:
        """Also ends every other session: whoever else held one may have known the old password.
        A change to how the account is reached asks for every factor it has (ASVS 5.0 V7.5.1):
        the current password, and a TOTP or recovery code when MFA is on, limited and counted
        like a sign-in's, so a stolen token is no guessing oracle."""
        account = self._account(claims)
        proof = Proof(password=current_password, code=code)
        self._reauthentication.prove(account, claims, proof, "change_password")
        new_hash = self._acceptable_hash(account, new_password)
        # A sign-in that verified the old password and raced the change is cut off too (its
        # refresh token already is: its session is bound to the old password).
        with self._sessions.cutting_off(account.id, keep=claims.session_id) as now:
            account.change_password(new_hash, now, self._rules.history_size)
            account.revoke_all_sessions(now, keep=claims.session_id)
            self._log.save(account)

    @traced
    @retried_on_conflict
    def forget(self, email: str) -> None:
        """Mails a reset link if the address has an account; does nothing, silently, otherwise."""
        claim = self._log.email_claim(normalise_email(email))
        account = None if claim is None else self._log.find(claim.account_id, Account)
        if account is None:
            return
        token = issue_token(account.id)
        account.request_password_reset(
            token_hash=digest(token),
            sealed_token=self._box.seal(token),
            at=self._clock.now(),
            ttl=self._rules.reset_ttl,
        )
        self._log.save(account)

    @traced
    @retried_on_conflict
    def reset(self, token: str, new_password: str) -> None:
        account = self._log.find(owner_of(token), Account)
        if account is None:
            raise InvalidToken
        now = self._clock.now()
        # The token first: no hashing work, and no policy answers, for whoever lacks one.
        account.ensure_reset_token(digest(token), now)
        new_hash = self._acceptable_hash(account, new_password)
        with self._sessions.cutting_off(account.id, at=now):
            account.reset_password(digest(token), new_hash, now, self._rules.history_size)
            self._log.save(account)

    def _acceptable_hash(self, account: Account, new_password: str) -> str:
        password = self._rules.policy.check(
            new_password, email=account.email, username=account.username, field="new_password"
        )
        recent = account.recent_password_hashes[: self._rules.history_size]
        if any(self._hasher.verify(old, password) for old in recent):
            raise Invalid(
                FieldError(
                    "new_password",
                    "reused",
                    f"must not be one of your last {self._rules.history_size} passwords",
                )
            )
        return self._hasher.hash(password)

    def _account(self, claims: AccessClaims) -> Account:
        account = self._log.find(claims.account_id, Account)
        if account is None:
            raise AccountNotFound
        return account
