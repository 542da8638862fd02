"""Signing in with a password (and a second factor when the account has one), and counting
every sign-in kind's failures towards the lock. A verified sign-in hands its session to
Sessions, which owns it from then on (passkey and provider sign-ins do the same from their own
modules)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.factors.recovery_codes import recovery_code_digest
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import Clock, OneTimePasswords, PasswordHasher, SecretBox, TokenSigner
from application.sessions.lifecycle import SessionRules, Sessions
from application.tracing import traced
from application.views import Client, MfaChallenge, TokenPair
from domain.account import Account
from domain.errors import InvalidCredentials, InvalidMfaCode, InvalidMfaToken
from domain.password_policy import normalise_password

# RFC 8176's names for how a sign-in was proven (the ID tokens of apps signed in from it).
PASSWORD_AMR = ("pwd",)


class Login:
    def __init__(
        self,
        log: EventLog,
        hasher: PasswordHasher,
        signer: TokenSigner,
        otp: OneTimePasswords,
        box: SecretBox,
        sessions: Sessions,
        clock: Clock,
        rules: SessionRules,
    ) -> None:
        self._log = log
        self._sessions = sessions
        self._hasher = hasher
        self._signer = signer
        self._otp = otp
        self._box = box
        self._clock = clock
        self._rules = rules
        # Verifying against a real hash of our own parameters makes an unknown login cost what a
        # wrong password costs, so timing does not tell which logins exist.
        self._decoy_hash = hasher.hash("decoy password, never a credential")

    @traced
    def log_in(
        self, login: str, password: str, client: Client, otp: str | None = None
    ) -> TokenPair | MfaChallenge:
        account = self._log.account_for_login(login)
        password = normalise_password(password)
        if account is None:
            self._hasher.verify(self._decoy_hash, password)
            raise InvalidCredentials
        # Checked before the password, so a locked account is no oracle for guesses.
        account.ensure_not_locked(self._clock.now())
        if not self._hasher.verify(account.password_hash, password):
            self._record_failure(account.id, factor="password")
            raise InvalidCredentials
        account.ensure_enabled()
        account.ensure_may_log_in(self._rules.require_verified_email)
        if self._hasher.needs_rehash(account.password_hash):
            self._rehash(account.id, password)
            account = self._account(account.id)
        if account.mfa_enabled:
            if otp is None:
                return MfaChallenge(self._signer.issue_mfa_token(account.id, self._clock.now()))
            return self._second_factor(account.id, otp, client)
        generation = account.password_generation
        try:
            # The account this login verified, not a second load of it: anything recorded on
            # it since makes the save a conflict, and the re-check after the save catches a
            # change that commits meanwhile when this login records nothing on the account.
            return self._sessions.start(account, client, generation, PASSWORD_AMR)
        except IntegrityError:
            return self._start_fresh_session(account.id, client, generation)

    def mfa_subject(self, mfa_token: str) -> UUID:
        """The account an MFA token speaks for (for rate limiting), or InvalidMfaToken."""
        return self._signer.verify_mfa_token(mfa_token, self._clock.now())

    @traced
    def complete_mfa(self, mfa_token: str, code: str, client: Client) -> TokenPair:
        account_id = self.mfa_subject(mfa_token)
        account = self._log.find(account_id, Account)
        if account is None or not account.mfa_enabled or account.disabled:
            raise InvalidMfaToken
        account.ensure_not_locked(self._clock.now())
        return self._second_factor(account_id, code, client)

    @retried_on_conflict
    def _second_factor(self, account_id: UUID, code: str, client: Client) -> TokenPair:
        """A TOTP code, or a recovery code; either is spent by an event, so a replay (even a
        simultaneous one, through optimistic concurrency) is refused."""
        account = self._account(account_id)
        now = self._clock.now()
        sealed = account.mfa_sealed_secret
        step = (
            None if sealed is None else self._otp.accepted_step(self._box.open(sealed), code, now)
        )
        try:
            amr: tuple[str, ...]
            if step is not None:
                account.use_totp(step, now)
                amr = ("pwd", "otp", "mfa")
            else:
                account.use_recovery_code(recovery_code_digest(code), now)
                amr = ("pwd", "mfa")
        except InvalidMfaCode:
            self._record_failure(account_id, factor="mfa")
            raise
        return self._sessions.start(account, client, account.password_generation, amr)

    def fail(self, account_id: UUID, factor: str) -> None:
        """A failed sign-in by another factor (a passkey): counts towards the lock."""
        self._record_failure(account_id, factor)

    @retried_on_conflict
    def _start_fresh_session(self, account_id: UUID, client: Client, generation: int) -> TokenPair:
        """A session for an account loaded afresh on each try: a failed login recorded
        meanwhile (the success resets the count) is a conflict to retry, never an error."""
        return self._sessions.start(self._account(account_id), client, generation, PASSWORD_AMR)

    @retried_on_conflict
    def _record_failure(self, account_id: UUID, factor: str) -> None:
        account = self._account(account_id)
        account.fail_login(self._clock.now(), self._rules.lockout, factor=factor)
        self._log.save(account)

    @retried_on_conflict
    def _rehash(self, account_id: UUID, password: str) -> None:
        """Hashing parameters were raised since this hash was made: upgrade it while we hold the
        password, which we never will otherwise."""
        account = self._account(account_id)
        account.rehash_password(self._hasher.hash(password), self._clock.now())
        self._log.save(account)

    def _account(self, account_id: UUID) -> Account:
        account = self._log.find(account_id, Account)
        if account is None:
            raise InvalidCredentials
        return account
