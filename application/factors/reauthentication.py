"""Proving it is still the person, before a change a stolen access token alone must not make
(ASVS 5.0 V7.5.1): a new way in (a passkey, a linked identity) or a weakening (MFA off, new
recovery codes, an identity unlinked, a passkey removed, the account erased).

The proof, in the command's own request body:
- the password, and a TOTP or recovery code when MFA is on;
- or, in place of both, an assertion of one of the account's passkeys over a challenge asked for
  with the access token (bound to this account, taken once), with user verification required:
  the authenticator and its PIN or biometric are two factors in one, and stronger than a
  password, so an account with a password may use it too;
- or, for an account without a password (made by a provider sign-in), a sign-in within
  REAUTH_MAX_AGE (the access token's `auth_time`, which no refresh renews), and a code when
  MFA is on.

Every guess counts as a failed login does: limited per client IP and per account (the login
allowance), refused while the account is locked (with the lock's own answer), and each wrong
password, code or passkey records LoginFailed naming the command, in a save of its own, before
the command refuses. A code is spent (or a passkey's counter moved) on the account given: the
command saves that with its own change, so the same code never proves twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID

from application.factors.recovery_codes import recovery_code_digest
from application.factors.throttle import Throttle
from application.origin import current_client
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import (
    AccessClaims,
    Clock,
    CredentialRefused,
    OneTimePasswords,
    OneTimeValues,
    PasswordHasher,
    SecretBox,
    WebAuthn,
)
from domain.account import Account
from domain.errors import (
    AccountNotFound,
    InvalidMfaCode,
    InvalidPasskey,
    PasskeyNotFound,
    ReauthenticationRequired,
    WrongPassword,
)
from domain.lockout import LockoutPolicy
from domain.password_policy import normalise_password

# The throttle's action: limits of the sign-in's size (RATE_LIMIT_LOGIN), per client IP and per
# account, in allowances of their own, so that confirming a change never eats an IP's sign-ins.
THROTTLE = "reauthenticate"


@dataclass(frozen=True)
class Proof:
    """What a request offers: the password and a code, or a passkey assertion (its toJSON())."""

    password: str | None = None
    code: str | None = None
    passkey: dict[str, Any] | None = None


@dataclass(frozen=True)
class Asks:
    """What a form must ask of this account: a password (none for an account without one,
    which proves itself by a recent sign-in) and a code (MFA on)."""

    password: bool
    code: bool


@dataclass(frozen=True)
class ReauthenticationRules:
    max_age: timedelta = timedelta(seconds=300)  # REAUTH_MAX_AGE: how recent a sign-in proves
    challenge_ttl: timedelta = timedelta(seconds=300)
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)


def _ceremony(account_id: UUID) -> str:
    return f"reauthenticate:{account_id}"


class Reauthentication:
    def __init__(
        self,
        log: EventLog,
        hasher: PasswordHasher,
        otp: OneTimePasswords,
        box: SecretBox,
        webauthn: WebAuthn,
        challenges: OneTimeValues,
        throttle: Throttle,
        clock: Clock,
        rules: ReauthenticationRules,
    ) -> None:
        self._log = log
        self._hasher = hasher
        self._otp = otp
        self._box = box
        self._webauthn = webauthn
        self._challenges = challenges
        self._throttle = throttle
        self._clock = clock
        self._rules = rules

    def asks(self, claims: AccessClaims) -> Asks:
        account = self._account(claims.account_id)
        return Asks(password=account.has_password, code=account.mfa_enabled)

    def passkey_options(self, claims: AccessClaims) -> dict[str, Any]:
        """PublicKeyCredentialRequestOptions for one of the caller's own passkeys, user
        verification required; the challenge proves once, for this account only."""
        account = self._account(claims.account_id)
        if not account.passkeys:
            raise PasskeyNotFound
        ceremony = self._webauthn.request_options(
            allow=[passkey.credential_id for passkey in account.passkey_list()],
            require_verification=True,
        )
        expires_at = self._clock.now() + self._rules.challenge_ttl
        self._challenges.put(ceremony.challenge, _ceremony(account.id), expires_at)
        return ceremony.options

    def prove(self, account: Account, claims: AccessClaims, proof: Proof, command: str) -> None:
        """Raises, having recorded the failure, unless `proof` shows the account's owner.
        `command` names what the proof was for, in the trail (LoginFailed)."""
        now = self._clock.now()
        self._admit(account, now)
        if proof.passkey is not None:
            self._passkey(account, proof.passkey, command, now)
            return
        if proof.password is not None:
            self._password(account, proof.password, command)
        elif account.has_password or not self._recent(claims, now):
            raise ReauthenticationRequired
        if account.mfa_enabled:
            self._code(account, proof.code, command, now)

    def _admit(self, account: Account, now: datetime) -> None:
        client = current_client.get()
        self._throttle.check(THROTTLE, client.ip if client else "", f"account:{account.id}")
        account.ensure_not_locked(now)  # checked first, so a locked account is no oracle

    def _recent(self, claims: AccessClaims, now: datetime) -> bool:
        if claims.auth_time is None:
            return False
        signed_in = datetime.fromtimestamp(claims.auth_time, UTC)
        return now - signed_in <= self._rules.max_age

    def _password(self, account: Account, password: str, command: str) -> None:
        if not account.has_password or not self._hasher.verify(
            account.password_hash, normalise_password(password)
        ):
            self._fail(account.id, "password", command)
            raise WrongPassword

    def _code(self, account: Account, code: str | None, command: str, now: datetime) -> None:
        if not code or account.mfa_sealed_secret is None:
            raise InvalidMfaCode
        step = self._otp.accepted_step(self._box.open(account.mfa_sealed_secret), code, now)
        try:
            if step is not None:
                account.use_totp(step, now)
            else:
                account.use_recovery_code(recovery_code_digest(code), now)
        except InvalidMfaCode:
            self._fail(account.id, "mfa", command)
            raise

    def _passkey(
        self, account: Account, credential: dict[str, Any], command: str, now: datetime
    ) -> None:
        try:
            assertion = self._webauthn.read_assertion(credential)
        except CredentialRefused:
            self._refuse(account.id, command)
        # Taken whatever follows: an assertion over it proves once, and for this account only.
        ceremony = self._challenges.take(assertion.challenge, now)
        if ceremony != _ceremony(account.id) or assertion.credential_id not in account.passkeys:
            self._refuse(account.id, command)
        passkey = account.passkey(assertion.credential_id)
        try:
            sign_count = self._webauthn.verify_assertion(
                credential, assertion.challenge, passkey.public_key, require_verification=True
            )
        except CredentialRefused:
            self._refuse(account.id, command)
        if passkey.counter_went_back(sign_count):
            self._record_clone(account.id, assertion.credential_id, sign_count, command)
            raise InvalidPasskey
        account.use_passkey(assertion.credential_id, sign_count, now, self._rules.lockout)

    def _refuse(self, account_id: UUID, command: str) -> NoReturn:
        self._fail(account_id, "passkey", command)
        raise InvalidPasskey

    @retried_on_conflict
    def _fail(self, account_id: UUID, factor: str, command: str) -> None:
        """Saved on its own, before the command refuses: the refusal changes nothing else."""
        account = self._account(account_id)
        account.fail_login(self._clock.now(), self._rules.lockout, factor=factor, command=command)
        self._log.save(account)

    @retried_on_conflict
    def _record_clone(
        self, account_id: UUID, credential_id: str, sign_count: int, command: str
    ) -> None:
        """A counter that went back (a cloned authenticator), recorded as at a sign-in."""
        account = self._account(account_id)
        now = self._clock.now()
        account.use_passkey(credential_id, sign_count, now, self._rules.lockout, command)
        self._log.save(account)

    def _account(self, account_id: UUID) -> Account:
        account = self._log.find(account_id, Account)
        if account is None:
            raise AccountNotFound
        return account
