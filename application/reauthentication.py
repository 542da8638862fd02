"""Proving it is still the person, before a change a stolen access token alone must not make
(erasing the account, removing a passkey): the current password, and a TOTP or recovery code
when MFA is on. A code is spent on the account given, as at login."""

from __future__ import annotations

from application.ports import Clock, OneTimePasswords, PasswordHasher, SecretBox
from application.recovery_codes import recovery_code_digest
from domain.account import Account
from domain.errors import InvalidMfaCode, WrongPassword
from domain.password_policy import normalise_password


def reauthenticate(
    account: Account,
    password: str,
    code: str | None,
    hasher: PasswordHasher,
    otp: OneTimePasswords,
    box: SecretBox,
    clock: Clock,
) -> None:
    if not hasher.verify(account.password_hash, normalise_password(password)):
        raise WrongPassword
    if not account.mfa_enabled:
        return
    now = clock.now()
    if not code or account.mfa_sealed_secret is None:
        raise InvalidMfaCode
    step = otp.accepted_step(box.open(account.mfa_sealed_secret), code, now)
    if step is not None:
        account.use_totp(step, now)
    else:
        account.use_recovery_code(recovery_code_digest(code), now)
