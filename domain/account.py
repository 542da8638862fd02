"""The Account aggregate and the claims that keep email addresses and usernames unique."""

from __future__ import annotations

import hmac
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    AccountLocked,
    ConsentNotFound,
    EmailNotVerified,
    FieldError,
    IdentityNotFound,
    IdentityTaken,
    Invalid,
    InvalidCredentials,
    InvalidMfaCode,
    InvalidPasskeyRegistration,
    InvalidToken,
    LastWayIn,
    MfaAlreadyEnabled,
    MfaCodeAlreadyUsed,
    MfaNotEnabled,
    PasskeyNotFound,
)
from domain.external_identity import ExternalIdentity, identity_state
from domain.lockout import LockoutPolicy
from domain.passkey import Passkey, passkey_state
from domain.session import Session, SessionTerms

ROLES = ("admin", "auditor")  # admin: lock, unlock, disable, list; auditor: read the trail

EMAIL_NAMESPACE = UUID("6f0b8c9e-3d5a-4c1e-9a57-2f4e8b1d0c31")
USERNAME_NAMESPACE = UUID("b2d7e4a1-8c3f-4e96-a0d5-7c1b9f2e6a48")
IDENTITY_NAMESPACE = UUID("0d3c7a52-9e1b-4f68-b8a4-5c2e71f0d9b3")

# The password hash of an account made by a first sign-in with another provider: no password
# verifies against it, until a reset sets one.
NO_PASSWORD = ""

# How a personal value reads once its person has been erased (their data key destroyed).
ERASED = "[erased]"


def ensure_known_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid(FieldError("role", "unknown_role", f"must be one of {', '.join(ROLES)}"))


class _Claim(Aggregate):
    """A value (an email address, a username) held by one account, named by a keyed hash of its
    normalised form (its fingerprint), never by the value itself.

    Its id is derived from the fingerprint, so two registrations of one value write the same
    aggregate id and the event store's optimistic concurrency lets exactly one of them win. An
    erasure (or an unlink) releases the claim; the value's next holder makes a claim of the next
    generation, whose id is derived from the fingerprint and the generation: two registrations
    race for it the same way, and nothing in either claim's history names the other's account,
    so a copy of the store without SECRET_KEY does not link an erased account to the next owner
    of its address. (Releases recorded before generations were taken over in place: TakenOver.)
    """

    namespace: ClassVar[UUID]
    account_id: UUID | None
    generation: int

    @classmethod
    def id_for(cls, fingerprint: str, generation: int = 0) -> UUID:
        return uuid5(
            cls.namespace, fingerprint if generation == 0 else f"{fingerprint}/{generation}"
        )

    @classmethod
    def made(
        cls, fingerprint: str, account_id: UUID, at: datetime, after: Self | None = None
    ) -> Self:
        """The claim of a value for `account_id`: its first, or the next after `after`, the
        value's claim that was released."""
        if after is not None and after.held:
            raise ValueError("the claim is held")
        generation = 0 if after is None else after.generation + 1
        # Each kind's own __init__ event takes these.
        made: Self = cls(  # type: ignore[call-arg]
            id=cls.id_for(fingerprint, generation),
            account_id=account_id,
            timestamp=at,
            generation=generation,
        )
        return made

    @property
    def held(self) -> bool:
        return self.account_id is not None

    def release(self, at: datetime) -> None:
        if self.held:
            self._released(timestamp=at)

    @event("Released")
    def _released(self, timestamp: datetime) -> None:
        self.account_id = None

    def take_over(self, account_id: UUID, at: datetime) -> None:
        """A released value claimed by a new account."""
        if self.held:
            raise ValueError("the claim is held")
        self._taken_over(account_id=account_id, timestamp=at)

    @event("TakenOver")
    def _taken_over(self, account_id: UUID, timestamp: datetime) -> None:
        self.account_id = account_id


class EmailClaim(_Claim):
    namespace = EMAIL_NAMESPACE

    @event("EmailClaimed")
    def __init__(
        self, id: UUID, account_id: UUID, timestamp: datetime, generation: int = 0
    ) -> None:
        self.account_id = account_id
        self.generation = generation  # absent from claims made before generations: 0


class UsernameClaim(_Claim):
    namespace = USERNAME_NAMESPACE

    @event("UsernameClaimed")
    def __init__(
        self, id: UUID, account_id: UUID, timestamp: datetime, generation: int = 0
    ) -> None:
        self.account_id = account_id
        self.generation = generation  # absent from claims made before generations: 0


class IdentityClaim(_Claim):
    """An external identity (provider and subject) linked to one account, named by the keyed
    fingerprint of "provider:subject": signing in finds the account without the subject in
    plain text, and two first sign-ins with one identity race for one aggregate id."""

    namespace = IDENTITY_NAMESPACE

    @event("IdentityClaimed")
    def __init__(
        self, id: UUID, account_id: UUID, timestamp: datetime, generation: int = 0
    ) -> None:
        self.account_id = account_id
        self.generation = generation  # absent from claims made before generations: 0


class Account(Aggregate):
    """A person's identity: credentials, verified email, profile.

    Login sessions are not recorded here but on Session aggregates of their own, so that logins
    and refreshes on many devices never contend for this stream (see docs/architecture.md, "Sessions").
    """

    # Made by the @event decorators below; named here for projections and type checkers.
    Registered: ClassVar[type[Any]]
    EmailVerificationRequested: ClassVar[type[Any]]
    PasswordResetRequested: ClassVar[type[Any]]
    PasswordChanged: ClassVar[type[Any]]
    AccountLocked: ClassVar[type[Any]]
    MfaEnabled: ClassVar[type[Any]]
    MfaDisabled: ClassVar[type[Any]]
    RecoveryCodesRenewed: ClassVar[type[Any]]
    PasskeyRegistered: ClassVar[type[Any]]
    PasskeyRemoved: ClassVar[type[Any]]
    IdentityLinked: ClassVar[type[Any]]
    IdentityUnlinked: ClassVar[type[Any]]
    AccountDisabled: ClassVar[type[Any]]
    AllSessionsRevoked: ClassVar[type[Any]]
    AccountErased: ClassVar[type[Any]]

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
        self.lockouts = 0  # locks since the last successful login: each doubles the next
        self.locked = False
        self.locked_until: datetime | None = None  # None while locked: until an operator unlocks
        self.locked_by: str | None = None  # the operator whose lock it is; None: the policy's
        self.disabled = False
        self.previous_password_hashes: list[str] = []  # newest first
        # Counts password changes: a session is bound to the password its login verified.
        self.password_generation = 0
        self.reset_token_hash: str | None = None
        self.reset_expires_at: datetime | None = None
        self.sessions_revoked_at: datetime | None = None
        self.kept_session_id: UUID | None = None  # the one session a revocation spared
        self.roles: list[str] = []
        # TOTP secrets are sealed (AES-GCM under SECRET_KEY): never in clear in an event.
        self.mfa_enabled = False
        self.mfa_sealed_secret: str | None = None
        self.mfa_pending_sealed_secret: str | None = None
        self.last_totp_step = -1  # RFC 6238 5.2: a code accepted once is refused after
        self.recovery_code_hashes: list[str] = []
        # WebAuthn credentials by credential id (base64url); JSON values only (domain/passkey.py).
        self.passkeys: dict[str, dict[str, Any]] = {}
        # Identities at other providers by our identity id; JSON values only (see
        # domain/external_identity.py). Accounts from before them have none (_identities).
        self.identities: dict[str, dict[str, Any]] = {}
        # What the person let each app (OpenID Provider client, by client id) have: scopes,
        # when, and the app sessions started under it; JSON values only (_consents).
        self.consents: dict[str, dict[str, Any]] = {}
        self.erased = False

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

    def is_locked(self, at: datetime) -> bool:
        return self.locked and (self.locked_until is None or at < self.locked_until)

    def ensure_not_locked(self, at: datetime) -> None:
        """A lock lifts by itself when its time is up; until then even the right password fails."""
        if self.is_locked(at):
            raise AccountLocked(self.locked_until, at)

    def ensure_enabled(self) -> None:
        """Asked only after the password matched; a disabled account answers as a wrong password
        would, so the answer tells a guesser nothing."""
        if self.disabled:
            raise InvalidCredentials

    def fail_login(
        self, at: datetime, policy: LockoutPolicy, factor: str = "password", command: str = "login"
    ) -> None:
        """A wrong password or a wrong second factor: both count towards the lock, whether at
        a sign-in or behind a signed-in session (`command`: what the guess was made for)."""
        lock_until = policy.lock_until(self.failed_logins + 1, self.lockouts, at)
        self._login_failed(factor=factor, command=command, timestamp=at)
        if lock_until is not None:
            self._account_locked(until=lock_until, operator=None, timestamp=at)

    @event("LoginFailed")
    def _login_failed(self, factor: str, timestamp: datetime, command: str = "login") -> None:
        # `command` is absent from events recorded before it was: those were all sign-ins.
        self.failed_logins += 1

    def lock(self, at: datetime, operator: str, until: datetime | None = None) -> None:
        """An operator's lock: until `until`, or until an operator unlocks when None."""
        self._account_locked(until=until, operator=operator, timestamp=at)

    @event("AccountLocked")
    def _account_locked(
        self, until: datetime | None, operator: str | None, timestamp: datetime
    ) -> None:
        self.locked = True
        self.locked_until = until
        self.locked_by = operator
        self.failed_logins = 0
        if operator is None:
            self.lockouts += 1  # only the policy's own locks grow the next one

    def succeed_login(self, at: datetime) -> None:
        """Resets the failure and lock counts; records nothing when there were none."""
        if self.failed_logins or self.lockouts:
            self._failed_logins_reset(timestamp=at)

    @event("FailedLoginsReset")
    def _failed_logins_reset(self, timestamp: datetime) -> None:
        self.failed_logins = 0
        self.lockouts = 0

    def unlock(self, at: datetime, reason: str, operator: str | None = None) -> bool:
        """Lifts a lock before its time (a password reset, an operator); False when there was
        nothing to lift. Only an operator lifts an operator's lock."""
        locked = self.is_locked(at)
        if not (locked or self.failed_logins) or (locked and self.locked_by and not operator):
            return False
        self._account_unlocked(reason=reason, operator=operator, timestamp=at)
        return True

    @event("AccountUnlocked")
    def _account_unlocked(self, reason: str, operator: str | None, timestamp: datetime) -> None:
        self.locked = False
        self.locked_until = None
        self.locked_by = None
        self.failed_logins = 0
        self.lockouts = 0

    # Administration: every change names the operator who made it

    def disable(self, at: datetime, operator: str) -> bool:
        """Ends every session too: a disabled account holds no live token."""
        if self.disabled:
            return False
        self._account_disabled(operator=operator, timestamp=at)
        self.revoke_all_sessions(at)
        return True

    @event("AccountDisabled")
    def _account_disabled(self, operator: str, timestamp: datetime) -> None:
        self.disabled = True

    def enable(self, at: datetime, operator: str) -> bool:
        if not self.disabled:
            return False
        self._account_enabled(operator=operator, timestamp=at)
        return True

    @event("AccountEnabled")
    def _account_enabled(self, operator: str, timestamp: datetime) -> None:
        self.disabled = False

    def grant_role(self, role: str, at: datetime, operator: str) -> bool:
        ensure_known_role(role)
        if role in self.roles:
            return False
        self._role_granted(role=role, operator=operator, timestamp=at)
        return True

    @event("RoleGranted")
    def _role_granted(self, role: str, operator: str, timestamp: datetime) -> None:
        self.roles = sorted({*self.roles, role})

    def revoke_role(self, role: str, at: datetime, operator: str) -> bool:
        """Ends every session too, so no live access token still carries the role."""
        ensure_known_role(role)
        if role not in self.roles:
            return False
        self._role_revoked(role=role, operator=operator, timestamp=at)
        self.revoke_all_sessions(at)
        return True

    @event("RoleRevoked")
    def _role_revoked(self, role: str, operator: str, timestamp: datetime) -> None:
        self.roles = [r for r in self.roles if r != role]

    # Passwords

    @property
    def recent_password_hashes(self) -> list[str]:
        """The current hash first, then earlier ones: what a new password must not match."""
        return [self.password_hash, *self.previous_password_hashes]

    def change_password(self, password_hash: str, at: datetime, history_size: int) -> None:
        self._password_changed(password_hash=password_hash, history_size=history_size, timestamp=at)

    @event("PasswordChanged")
    def _password_changed(self, password_hash: str, history_size: int, timestamp: datetime) -> None:
        # Keep history_size hashes in all, the new current one included.
        self.previous_password_hashes = self.recent_password_hashes[: max(history_size - 1, 0)]
        self.password_hash = password_hash
        self.password_generation += 1
        # A reset link mailed before the change must not undo it.
        self.reset_token_hash = None
        self.reset_expires_at = None

    def rehash_password(self, password_hash: str, at: datetime) -> None:
        """The same password under new hashing parameters, made at a successful login."""
        self._password_rehashed(password_hash=password_hash, timestamp=at)

    @event("PasswordRehashed")
    def _password_rehashed(self, password_hash: str, timestamp: datetime) -> None:
        self.password_hash = password_hash

    def request_password_reset(
        self, token_hash: str, sealed_token: str, at: datetime, ttl: timedelta
    ) -> None:
        """A newer request supersedes older ones: only the latest token's hash is kept."""
        self._password_reset_requested(
            email=self.email,
            token_hash=token_hash,
            sealed_token=sealed_token,
            expires_at=at + ttl,
            timestamp=at,
        )

    @event("PasswordResetRequested")
    def _password_reset_requested(
        self,
        email: str,
        token_hash: str,
        sealed_token: str,
        expires_at: datetime,
        timestamp: datetime,
    ) -> None:
        self.reset_token_hash = token_hash
        self.reset_expires_at = expires_at

    def ensure_reset_token(self, token_hash: str, at: datetime) -> None:
        if (
            self.reset_token_hash is None
            or self.reset_expires_at is None
            or at >= self.reset_expires_at
            or not hmac.compare_digest(token_hash, self.reset_token_hash)
        ):
            raise InvalidToken

    def reset_password(
        self, token_hash: str, password_hash: str, at: datetime, history_size: int
    ) -> None:
        """Proves control of the mailbox: sets the password, lifts a lock, ends every session."""
        self.ensure_reset_token(token_hash, at)
        self.change_password(password_hash, at, history_size)
        self.unlock(at, reason="password_reset")
        self.revoke_all_sessions(at)

    # Multi-factor authentication (TOTP, RFC 6238)

    def start_mfa_enrollment(self, sealed_secret: str, at: datetime) -> None:
        if self.mfa_enabled:
            raise MfaAlreadyEnabled
        self._mfa_enrollment_started(sealed_secret=sealed_secret, timestamp=at)

    @event("MfaEnrollmentStarted")
    def _mfa_enrollment_started(self, sealed_secret: str, timestamp: datetime) -> None:
        self.mfa_pending_sealed_secret = sealed_secret

    def enable_mfa(self, step: int, recovery_code_hashes: list[str], at: datetime) -> None:
        """Confirmed by a code from the pending secret, which proves the authenticator has it."""
        if self.mfa_enabled:
            raise MfaAlreadyEnabled
        if self.mfa_pending_sealed_secret is None:
            raise MfaNotEnabled
        self._mfa_enabled(step=step, recovery_code_hashes=recovery_code_hashes, timestamp=at)

    @event("MfaEnabled")
    def _mfa_enabled(self, step: int, recovery_code_hashes: list[str], timestamp: datetime) -> None:
        self.mfa_enabled = True
        self.mfa_sealed_secret = self.mfa_pending_sealed_secret
        self.mfa_pending_sealed_secret = None
        self.last_totp_step = step
        self.recovery_code_hashes = list(recovery_code_hashes)

    def use_totp(self, step: int, at: datetime) -> None:
        if not self.mfa_enabled:
            raise MfaNotEnabled
        if step <= self.last_totp_step:
            raise MfaCodeAlreadyUsed  # replayed, or older than one already used
        self._totp_code_accepted(step=step, timestamp=at)

    @event("TotpCodeAccepted")
    def _totp_code_accepted(self, step: int, timestamp: datetime) -> None:
        self.last_totp_step = step

    def use_recovery_code(self, code_hash: str, at: datetime) -> None:
        if not self.mfa_enabled:
            raise MfaNotEnabled
        if not any(hmac.compare_digest(code_hash, known) for known in self.recovery_code_hashes):
            raise InvalidMfaCode
        self._recovery_code_used(code_hash=code_hash, timestamp=at)

    @event("RecoveryCodeUsed")
    def _recovery_code_used(self, code_hash: str, timestamp: datetime) -> None:
        self.recovery_code_hashes = [h for h in self.recovery_code_hashes if h != code_hash]

    def renew_recovery_codes(self, recovery_code_hashes: list[str], at: datetime) -> None:
        """Ten new codes in place of whatever is left of the old ones, which stop working."""
        if not self.mfa_enabled:
            raise MfaNotEnabled
        self._recovery_codes_renewed(recovery_code_hashes=recovery_code_hashes, timestamp=at)

    @event("RecoveryCodesRenewed")
    def _recovery_codes_renewed(self, recovery_code_hashes: list[str], timestamp: datetime) -> None:
        self.recovery_code_hashes = list(recovery_code_hashes)

    def disable_mfa(self, at: datetime) -> None:
        if not self.mfa_enabled:
            raise MfaNotEnabled
        self._mfa_disabled(timestamp=at)

    @event("MfaDisabled")
    def _mfa_disabled(self, timestamp: datetime) -> None:
        self.mfa_enabled = False
        self.mfa_sealed_secret = None
        self.recovery_code_hashes = []

    def reseal_mfa_secret(self, sealed: str | None, pending: str | None, at: datetime) -> bool:
        """The same TOTP secrets sealed again, under a new version of the service's key (the
        old one is to be destroyed after a compromise); the events that carried them under the
        old one stay as they were. False when there is nothing to reseal."""
        if sealed is None and pending is None:
            return False
        self._mfa_secret_resealed(sealed_secret=sealed, pending_sealed_secret=pending, timestamp=at)
        return True

    @event("MfaSecretResealed")
    def _mfa_secret_resealed(
        self, sealed_secret: str | None, pending_sealed_secret: str | None, timestamp: datetime
    ) -> None:
        if sealed_secret is not None and self.mfa_sealed_secret is not None:
            self.mfa_sealed_secret = sealed_secret
        if pending_sealed_secret is not None and self.mfa_pending_sealed_secret is not None:
            self.mfa_pending_sealed_secret = pending_sealed_secret

    def claims_rekeyed(self, version: int, at: datetime) -> None:
        """The account's values (email, username, identities) claimed again under a new version
        of the fingerprint key (the old one is to be destroyed after a compromise). Recorded on
        the account so that the claims are saved with it: an erasure or an unlink meanwhile
        conflicts, and the next try sees it."""
        if self.erased:
            raise ValueError("an erased account claims nothing")
        self._claims_rekeyed(version=version, timestamp=at)

    @event("ClaimsRekeyed")
    def _claims_rekeyed(self, version: int, timestamp: datetime) -> None:
        pass

    # Passkeys (WebAuthn): the application verifies the ceremonies; the account keeps each
    # credential's public key and counter, and decides on the counter.

    def passkey(self, credential_id: str) -> Passkey:
        state = self.passkeys.get(credential_id)
        if state is None:
            raise PasskeyNotFound
        return Passkey.from_state(credential_id, state)

    def passkey_list(self) -> list[Passkey]:
        """Oldest first."""
        return sorted(
            (Passkey.from_state(cid, state) for cid, state in self.passkeys.items()),
            key=lambda passkey: passkey.created_at,
        )

    def register_passkey(
        self,
        credential_id: str,
        public_key: str,
        sign_count: int,
        name: str,
        transports: list[str],
        at: datetime,
    ) -> Passkey:
        if credential_id in self.passkeys:
            raise InvalidPasskeyRegistration  # excluded by the options: a replay, or a bug
        self._passkey_registered(
            credential_id=credential_id,
            public_key=public_key,
            sign_count=sign_count,
            passkey_name=name,
            transports=list(transports),
            timestamp=at,
        )
        return self.passkey(credential_id)

    @event("PasskeyRegistered")
    def _passkey_registered(
        self,
        credential_id: str,
        public_key: str,
        sign_count: int,
        passkey_name: str,
        transports: list[str],
        timestamp: datetime,
    ) -> None:
        self.passkeys = {
            **self.passkeys,
            credential_id: passkey_state(
                public_key, sign_count, passkey_name, transports, timestamp
            ),
        }

    def rename_passkey(self, credential_id: str, name: str, at: datetime) -> Passkey:
        if self.passkey(credential_id).name != name:
            self._passkey_renamed(credential_id=credential_id, passkey_name=name, timestamp=at)
        return self.passkey(credential_id)

    @event("PasskeyRenamed")
    def _passkey_renamed(self, credential_id: str, passkey_name: str, timestamp: datetime) -> None:
        if credential_id not in self.passkeys:
            return  # replayed after erasure: every credential id reads "[erased]" alike
        self.passkeys = {
            **self.passkeys,
            credential_id: {**self.passkeys[credential_id], "name": passkey_name},
        }

    def remove_passkey(self, credential_id: str, at: datetime) -> None:
        self.passkey(credential_id)
        self._passkey_removed(credential_id=credential_id, timestamp=at)

    @event("PasskeyRemoved")
    def _passkey_removed(self, credential_id: str, timestamp: datetime) -> None:
        self.passkeys = {k: v for k, v in self.passkeys.items() if k != credential_id}

    def use_passkey(
        self,
        credential_id: str,
        sign_count: int,
        at: datetime,
        policy: LockoutPolicy,
        command: str = "login",
    ) -> bool:
        """A verified assertion's counter. False when it went back: the refusal is recorded
        (PasskeyCounterWentBack, and a failure of `command` that counts towards the lock) for
        the caller to save before it refuses."""
        passkey = self.passkey(credential_id)
        if passkey.counter_went_back(sign_count):
            self._passkey_counter_went_back(
                credential_id=credential_id,
                sign_count=sign_count,
                stored_sign_count=passkey.sign_count,
                timestamp=at,
            )
            self.fail_login(at, policy, factor="passkey", command=command)
            return False
        self._passkey_used(credential_id=credential_id, sign_count=sign_count, timestamp=at)
        return True

    @event("PasskeyUsed")
    def _passkey_used(self, credential_id: str, sign_count: int, timestamp: datetime) -> None:
        if credential_id not in self.passkeys:
            return  # replayed after erasure (see _passkey_renamed)
        self.passkeys = {
            **self.passkeys,
            credential_id: {
                **self.passkeys[credential_id],
                "sign_count": sign_count,
                "last_used_at": timestamp.isoformat(),
            },
        }

    @event("PasskeyCounterWentBack")
    def _passkey_counter_went_back(
        self, credential_id: str, sign_count: int, stored_sign_count: int, timestamp: datetime
    ) -> None:
        pass  # a fact for the trail: the stored counter stays, so the clone stays refused

    # Identities at other providers (OpenID Connect, OAuth 2.0): the application verifies the
    # provider's answer; the account keeps which identities are its own.

    @property
    def has_password(self) -> bool:
        return self.password_hash not in (NO_PASSWORD, ERASED)

    def _identities(self) -> dict[str, dict[str, Any]]:
        return getattr(self, "identities", {})  # snapshots older than identities lack it

    def identity(self, identity_id: str) -> ExternalIdentity:
        state = self._identities().get(identity_id)
        if state is None:
            raise IdentityNotFound
        return ExternalIdentity.from_state(identity_id, state)

    def identity_list(self) -> list[ExternalIdentity]:
        """Oldest first."""
        return sorted(
            (ExternalIdentity.from_state(i, s) for i, s in self._identities().items()),
            key=lambda identity: identity.linked_at,
        )

    def identity_for(self, provider: str, subject: str) -> ExternalIdentity | None:
        for identity in self.identity_list():
            if identity.provider == provider and identity.subject == subject:
                return identity
        return None

    def link_identity(
        self, identity_id: str, provider: str, subject: str, email: str, at: datetime
    ) -> ExternalIdentity:
        if self.identity_for(provider, subject) is not None or identity_id in self._identities():
            raise IdentityTaken
        self._identity_linked(
            identity_id=identity_id,
            provider=provider,
            subject=subject,
            identity_email=email,
            timestamp=at,
        )
        return self.identity(identity_id)

    @event("IdentityLinked")
    def _identity_linked(
        self,
        identity_id: str,
        provider: str,
        subject: str,
        identity_email: str,
        timestamp: datetime,
    ) -> None:
        self.identities = {
            **self._identities(),
            identity_id: identity_state(provider, subject, identity_email, timestamp),
        }

    def ways_in_without(self, identity_id: str) -> int:
        """How many ways to sign in the account keeps if this identity goes."""
        others = [i for i in self._identities() if i != identity_id]
        return int(self.has_password) + len(self.passkeys) + len(others)

    def unlink_identity(self, identity_id: str, at: datetime) -> ExternalIdentity:
        identity = self.identity(identity_id)
        if self.ways_in_without(identity_id) == 0:
            raise LastWayIn
        self._identity_unlinked(identity_id=identity_id, provider=identity.provider, timestamp=at)
        return identity

    @event("IdentityUnlinked")
    def _identity_unlinked(self, identity_id: str, provider: str, timestamp: datetime) -> None:
        self.identities = {k: v for k, v in self._identities().items() if k != identity_id}

    def use_identity(self, identity_id: str, at: datetime) -> None:
        """A verified sign-in at the provider: recorded with the session it starts."""
        identity = self.identity(identity_id)
        self._identity_used(identity_id=identity_id, provider=identity.provider, timestamp=at)

    @event("IdentityUsed")
    def _identity_used(self, identity_id: str, provider: str, timestamp: datetime) -> None:
        if identity_id not in self._identities():
            return  # replayed after erasure: the collection reads empty
        self.identities = {
            **self._identities(),
            identity_id: {**self._identities()[identity_id], "last_used_at": timestamp.isoformat()},
        }

    def confirm_email_by_provider(self, provider: str, at: datetime) -> None:
        """The provider vouches that the address is the person's (`email_verified`)."""
        if not self.email_verified:
            self._email_verified(email=self.email, timestamp=at)

    # Sessions

    def revoke_all_sessions(self, at: datetime, keep: UUID | None = None) -> None:
        """Ends every session started up to `at` but `keep`, without touching each Session's
        stream: one event, however many devices."""
        self._all_sessions_revoked(kept_session_id=keep, timestamp=at)

    @event("AllSessionsRevoked")
    def _all_sessions_revoked(self, kept_session_id: UUID | None, timestamp: datetime) -> None:
        self.sessions_revoked_at = timestamp
        self.kept_session_id = kept_session_id

    def allows(self, session: Session, at: datetime) -> bool:
        """Whether the session is live, all that the account says of it considered."""
        return session.is_active(at, self.session_terms())

    def session_terms(self) -> SessionTerms:
        return SessionTerms(
            open=not (self.disabled or self.erased),
            cutoff=self.sessions_revoked_at,
            kept_session_id=self.kept_session_id,
            password_generation=self.password_generation,
            roles=tuple(self.roles),
            consents=tuple(
                (client_id, datetime.fromisoformat(state["granted_at"]))
                for client_id, state in self._consents().items()
            ),
        )

    # Consents to other apps

    def _consents(self) -> dict[str, dict[str, Any]]:
        return getattr(self, "consents", {})  # snapshots older than consents lack it

    def consented_scopes(self, client_id: str) -> frozenset[str]:
        return frozenset(self._consents().get(client_id, {}).get("scopes", ()))

    def consent_list(self) -> list[tuple[str, tuple[str, ...], datetime]]:
        """(client id, scopes, first granted at) of every consent, oldest first."""
        found = [
            (client_id, tuple(state["scopes"]), datetime.fromisoformat(state["granted_at"]))
            for client_id, state in self._consents().items()
        ]
        return sorted(found, key=lambda consent: consent[2])

    def consented_clients(self) -> frozenset[str]:
        """The apps the person has let in (and not withdrawn since)."""
        return frozenset(self._consents())

    def grant_consent(self, client_id: str, scopes: Collection[str], at: datetime) -> bool:
        """Lets the app have `scopes` besides what it had; False when that adds nothing."""
        held = self.consented_scopes(client_id)
        if client_id in self._consents() and held.issuperset(scopes):
            return False
        self._consent_granted(client_id=client_id, scopes=sorted(held | set(scopes)), timestamp=at)
        return True

    @event("ConsentGranted")
    def _consent_granted(self, client_id: str, scopes: list[str], timestamp: datetime) -> None:
        previous = self._consents().get(client_id)
        self.consents = {
            **self._consents(),
            client_id: {
                "scopes": scopes,
                "granted_at": previous["granted_at"] if previous else timestamp.isoformat(),
                "sessions": previous["sessions"] if previous else {},
            },
        }

    # An app session (a code exchanged) under the app's consent was once recorded here. No
    # longer (issue #22: every exchange of one person contended for this stream); an app's
    # consent reaches its sessions through a cutoff in the shared store instead. No command
    # records it now: the event stays so that the streams that have it still load.
    @event("AppSessionStarted")
    def _app_session_started(
        self, client_id: str, session_id: UUID, forget_before: datetime, timestamp: datetime
    ) -> None:
        state = self._consents().get(client_id)
        if state is None:
            return  # replayed after erasure: the collection reads empty
        cut = forget_before.isoformat()
        sessions = {k: v for k, v in state["sessions"].items() if v >= cut}
        sessions[str(session_id)] = timestamp.isoformat()
        self.consents = {**self._consents(), client_id: {**state, "sessions": sessions}}

    def revoke_consent(self, client_id: str, at: datetime) -> None:
        """Withdraws the app's consent (the caller cuts its sessions off). ConsentNotFound
        when the app has none."""
        if client_id not in self._consents():
            raise ConsentNotFound
        self._consent_revoked(client_id=client_id, timestamp=at)

    @event("ConsentRevoked")
    def _consent_revoked(self, client_id: str, timestamp: datetime) -> None:
        self.consents = {k: v for k, v in self._consents().items() if k != client_id}

    # Profile

    def update_profile(self, display_name: str, at: datetime) -> None:
        if display_name != self.display_name:
            self._profile_updated(display_name=display_name, timestamp=at)

    @event("ProfileUpdated")
    def _profile_updated(self, display_name: str, timestamp: datetime) -> None:
        self.display_name = display_name

    # Erasure

    def erase(self, at: datetime, operator: str) -> bool:
        """Forgets the person: every session ends, and the event says who asked ("self" or an
        operator) and nothing else. False when already erased. The values the earlier events
        hold become unreadable when the application destroys the account's data key."""
        if self.erased:
            return False
        self.revoke_all_sessions(at)
        self._account_erased(operator=operator, timestamp=at)
        return True

    @event("AccountErased")
    def _account_erased(self, operator: str, timestamp: datetime) -> None:
        self.erased = True
        self.email = self.username = self.display_name = ERASED
        self.password_hash = ERASED
        self.previous_password_hashes = []
        self.mfa_enabled = False
        self.mfa_sealed_secret = self.mfa_pending_sealed_secret = None
        self.recovery_code_hashes = []
        self.passkeys = {}
        self.identities = {}
        self.consents = {}
        self.verification_token_hash = self.reset_token_hash = None
        self.disabled = True
