"""Passkeys (WebAuthn): registering one on one's own account, naming and removing them, and
signing in with one, alone (a discoverable credential, user verification required) or as the
second factor after a password.

Each ceremony's challenge is kept (OneTimeValues) bound to what it was issued for, and is
taken, once, by the answer that carries it: so an answer is good for its own ceremony only,
once, and within PASSKEY_CHALLENGE_TTL. The challenge is read from the answer's clientDataJSON
before anything is verified, and the signature over that clientDataJSON is then checked
against it, so a changed clientDataJSON fails either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn
from uuid import UUID

from application.factors.login import Login
from application.factors.reauthentication import Proof, Reauthentication
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import (
    AccessClaims,
    Ceremony,
    Clock,
    CredentialRefused,
    NewCredential,
    OneTimeValues,
    TokenSigner,
    WebAuthn,
)
from application.sessions.lifecycle import Sessions
from application.tracing import traced
from application.views import Client, TokenPair
from domain.account import Account
from domain.errors import (
    AccountNotFound,
    InvalidMfaToken,
    InvalidPasskey,
    InvalidPasskeyRegistration,
)
from domain.lockout import LockoutPolicy
from domain.passkey import Passkey

DEFAULT_NAME = "Passkey"
SIGN_IN = "sign_in"


def _registration(account_id: UUID) -> str:
    return f"register:{account_id}"


def _second_factor(account_id: UUID) -> str:
    return f"second_factor:{account_id}"


@dataclass(frozen=True)
class PasskeyView:
    id: str  # the credential id, base64url
    name: str
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, passkey: Passkey) -> PasskeyView:
        return cls(passkey.credential_id, passkey.name, passkey.created_at, passkey.last_used_at)


@dataclass(frozen=True)
class SignInOptions:
    options: dict[str, Any]


@dataclass(frozen=True)
class PasskeyRules:
    challenge_ttl: timedelta = timedelta(seconds=300)
    require_verified_email: bool = True
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)  # a cloned passkey's lock


class Passkeys:
    def __init__(
        self,
        log: EventLog,
        webauthn: WebAuthn,
        challenges: OneTimeValues,
        login: Login,
        sessions: Sessions,
        signer: TokenSigner,
        reauthentication: Reauthentication,
        clock: Clock,
        rules: PasskeyRules,
    ) -> None:
        self._log = log
        self._webauthn = webauthn
        self._challenges = challenges
        self._login = login  # whose failures a wrong passkey counts towards the lock
        self._sessions = sessions
        self._signer = signer
        self._reauthentication = reauthentication
        self._clock = clock
        self._rules = rules

    # The account's own passkeys

    @traced
    @retried_on_conflict
    def registration_options(self, claims: AccessClaims, proof: Proof) -> dict[str, Any]:
        """Re-authenticated: the challenge is what makes a registration possible, and a new
        passkey is a new way in that skips the password and the second factor for good."""
        account = self._account(claims.account_id)
        self._reauthentication.prove(account, claims, proof, command="add_passkey")
        if account.pending_events:
            self._log.save(account)  # the code it spent, or the passkey it was proven with
        ceremony = self._webauthn.creation_options(
            user_id=account.id.bytes,
            user_name=account.username,
            display_name=account.display_name or account.username,
            exclude=[passkey.credential_id for passkey in account.passkey_list()],
        )
        return self._issue(ceremony, _registration(account.id))

    @traced
    def register(
        self, claims: AccessClaims, credential: dict[str, Any], name: str | None
    ) -> PasskeyView:
        try:
            challenge = self._webauthn.registration_challenge(credential)
        except CredentialRefused:
            raise InvalidPasskeyRegistration from None
        if self._challenges.take(challenge, self._clock.now()) != _registration(claims.account_id):
            raise InvalidPasskeyRegistration
        try:
            new = self._webauthn.verify_registration(credential, challenge)
        except CredentialRefused:
            raise InvalidPasskeyRegistration from None
        return self._record_registration(claims.account_id, new, name or DEFAULT_NAME)

    @retried_on_conflict
    def _record_registration(self, account_id: UUID, new: NewCredential, name: str) -> PasskeyView:
        account = self._account(account_id)
        passkey = account.register_passkey(
            new.credential_id,
            new.public_key,
            new.sign_count,
            name,
            list(new.transports),
            self._clock.now(),
        )
        self._log.save(account)
        return PasskeyView.of(passkey)

    def list(self, claims: AccessClaims) -> list[PasskeyView]:
        return [PasskeyView.of(p) for p in self._account(claims.account_id).passkey_list()]

    @traced
    @retried_on_conflict
    def rename(self, claims: AccessClaims, credential_id: str, name: str) -> PasskeyView:
        account = self._account(claims.account_id)
        passkey = account.rename_passkey(credential_id, name, self._clock.now())
        self._log.save(account)
        return PasskeyView.of(passkey)

    @traced
    @retried_on_conflict
    def remove(self, claims: AccessClaims, credential_id: str, proof: Proof) -> None:
        """Re-authenticated like an erasure: a stolen access token must not take away the
        person's way in (nor, by removing a passkey, hide a clone's)."""
        account = self._account(claims.account_id)
        account.passkey(credential_id)  # an unknown id is a 404 before any password is tried
        self._reauthentication.prove(account, claims, proof, command="remove_passkey")
        account.remove_passkey(credential_id, self._clock.now())
        self._log.save(account)  # with the TOTP or recovery code it spent

    # Signing in

    @traced
    def sign_in_options(self, mfa_token: str | None) -> SignInOptions:
        if mfa_token is None:
            ceremony = self._webauthn.request_options(allow=None, require_verification=True)
            return SignInOptions(self._issue(ceremony, SIGN_IN))
        account = self._mfa_account(mfa_token)
        ceremony = self._webauthn.request_options(
            allow=[passkey.credential_id for passkey in account.passkey_list()],
            require_verification=False,
        )
        return SignInOptions(self._issue(ceremony, _second_factor(account.id)))

    @traced
    def sign_in(
        self, credential: dict[str, Any], client: Client, mfa_token: str | None = None
    ) -> TokenPair:
        try:
            assertion = self._webauthn.read_assertion(credential)
        except CredentialRefused:
            raise InvalidPasskey from None
        if mfa_token is not None:
            account = self._mfa_account(mfa_token)
            if assertion.user_handle not in (None, b"", account.id.bytes):
                raise InvalidPasskey
            expected, require_verification = _second_factor(account.id), False
        else:
            found = self._account_of(assertion.user_handle)
            if found is None:
                self._challenges.take(assertion.challenge, self._clock.now())  # spent all the same
                raise InvalidPasskey  # no account to count the failure on
            account = found
            expected, require_verification = SIGN_IN, True
        now = self._clock.now()
        ceremony = self._challenges.take(assertion.challenge, now)
        account.ensure_not_locked(now)
        if ceremony != expected or assertion.credential_id not in account.passkeys:
            self._fail(account.id)
        passkey = account.passkey(assertion.credential_id)
        try:
            sign_count = self._webauthn.verify_assertion(
                credential, assertion.challenge, passkey.public_key, require_verification
            )
        except CredentialRefused:
            self._fail(account.id)
        if account.disabled:
            raise InvalidPasskey
        account.ensure_may_log_in(self._rules.require_verified_email)
        return self._start_session(account.id, assertion.credential_id, sign_count, client)

    @retried_on_conflict
    def _start_session(
        self, account_id: UUID, credential_id: str, sign_count: int, client: Client
    ) -> TokenPair:
        """A verified passkey signs in as a password does (the same session, trail, mail and
        lockout reset), its counter recorded in the same save; a counter that went back is
        recorded and refused. The account is loaded afresh on each try, so a conflict reruns
        the counter rule on the winner's state."""
        account = self._account(account_id)
        now = self._clock.now()
        if not account.use_passkey(credential_id, sign_count, now, self._rules.lockout):
            self._log.save(account)
            raise InvalidPasskey
        # RFC 8176's "hwk": a key the authenticator holds (a synced passkey is one too).
        return self._sessions.start(account, client, account.password_generation, ("hwk",))

    def _fail(self, account_id: UUID) -> NoReturn:
        self._login.fail(account_id, factor="passkey")
        raise InvalidPasskey

    def _mfa_account(self, mfa_token: str) -> Account:
        """The account whose password an MFA token vouches for, as at /api/auth/login/mfa."""
        account_id = self._login.mfa_subject(mfa_token)
        account = self._log.find(account_id, Account)
        if account is None or not account.mfa_enabled or account.disabled:
            raise InvalidMfaToken
        return account

    def _account_of(self, user_handle: bytes | None) -> Account | None:
        """A discoverable credential names its account: the user handle is the account id."""
        if user_handle is None or len(user_handle) != 16:
            return None
        account = self._log.find(UUID(bytes=user_handle), Account)
        return None if account is None or account.erased else account

    def _issue(self, ceremony: Ceremony, bound_to: str) -> dict[str, Any]:
        expires_at = self._clock.now() + self._rules.challenge_ttl
        self._challenges.put(ceremony.challenge, bound_to, expires_at)
        return ceremony.options

    def _account(self, account_id: UUID) -> Account:
        account = self._log.find(account_id, Account)
        if account is None:
            raise AccountNotFound
        return account
