"""Turning TOTP multi-factor authentication on and off for one's own account."""

from __future__ import annotations

from dataclasses import dataclass

from application.factors.reauthentication import Proof, Reauthentication
from application.factors.recovery_codes import new_recovery_codes, recovery_code_digest
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import AccessClaims, Clock, OneTimePasswords, SecretBox
from application.tracing import traced
from domain.account import Account
from domain.errors import AccountNotFound, InvalidMfaCode, MfaNotEnabled


@dataclass(frozen=True)
class Enrollment:
    secret: str
    otpauth_uri: str


class Mfa:
    def __init__(
        self,
        log: EventLog,
        otp: OneTimePasswords,
        box: SecretBox,
        reauthentication: Reauthentication,
        clock: Clock,
        issuer: str,
    ) -> None:
        self._log = log
        self._otp = otp
        self._box = box
        self._reauthentication = reauthentication
        self._clock = clock
        self._issuer = issuer

    @traced
    @retried_on_conflict
    def enroll(self, claims: AccessClaims) -> Enrollment:
        """A new secret, pending until a code from it is confirmed; shown once, stored sealed."""
        account = self._account(claims)
        secret = self._otp.new_secret()
        account.start_mfa_enrollment(self._box.seal(secret), self._clock.now())
        self._log.save(account)
        return Enrollment(secret, self._otp.provisioning_uri(secret, account.email, self._issuer))

    @traced
    @retried_on_conflict
    def confirm(self, claims: AccessClaims, code: str) -> list[str]:
        """Turns MFA on and returns the ten recovery codes: the only time they are shown."""
        account = self._account(claims)
        if account.mfa_pending_sealed_secret is None:
            raise MfaNotEnabled
        now = self._clock.now()
        secret = self._box.open(account.mfa_pending_sealed_secret)
        step = self._otp.accepted_step(secret, code, now)
        if step is None:
            raise InvalidMfaCode
        codes = new_recovery_codes()
        account.enable_mfa(step, [recovery_code_digest(c) for c in codes], now)
        self._log.save(account)
        return codes

    @traced
    @retried_on_conflict
    def disable(self, claims: AccessClaims, proof: Proof) -> None:
        """Needs both factors (the password and a code), or a passkey: a stolen access token,
        or a stolen phone, alone must not strip the second factor."""
        account = self._account(claims)
        if not account.mfa_enabled:
            raise MfaNotEnabled  # before any guess is taken
        self._reauthentication.prove(account, claims, proof, command="disable_mfa")
        account.disable_mfa(self._clock.now())
        self._log.save(account)  # with the code it spent

    @traced
    @retried_on_conflict
    def renew_recovery_codes(self, claims: AccessClaims, proof: Proof) -> list[str]:
        """Ten new recovery codes, shown once; what was left of the old ones stops working."""
        account = self._account(claims)
        if not account.mfa_enabled:
            raise MfaNotEnabled
        self._reauthentication.prove(account, claims, proof, command="renew_recovery_codes")
        codes = new_recovery_codes()
        account.renew_recovery_codes([recovery_code_digest(c) for c in codes], self._clock.now())
        self._log.save(account)
        return codes

    def enabled(self, claims: AccessClaims) -> bool:
        """Whether the caller's account asks for a second factor, from the event store: the
        page that just turned it on must show it on, with no read model's lag."""
        return self._account(claims).mfa_enabled

    def _account(self, claims: AccessClaims) -> Account:
        account = self._log.find(claims.account_id, Account)
        if account is None:
            raise AccountNotFound
        return account
