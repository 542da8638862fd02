"""Logging in (with a second factor when the account has one), refreshing, logging out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError

from application.event_log import EventLog, retried_on_conflict
from application.ports import (
    AccessClaims,
    Chain,
    Clock,
    OneTimePasswords,
    PasswordHasher,
    RefreshChains,
    RevocationList,
    SecretBox,
    TokenSigner,
)
from application.recovery_codes import recovery_code_digest
from application.tokens import digest, issue_refresh_token, owner_of, read_refresh_token
from application.tracing import traced
from application.views import Client, MfaChallenge, TokenPair
from domain.account import Account
from domain.errors import (
    InvalidCredentials,
    InvalidMfaCode,
    InvalidMfaToken,
    InvalidPasskey,
    InvalidRefreshToken,
    SessionNotFound,
)
from domain.lockout import LockoutPolicy
from domain.password_policy import normalise_password
from domain.session import Session


@dataclass(frozen=True)
class SessionRules:
    require_verified_email: bool = True
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    refresh_idle_ttl: timedelta = timedelta(days=14)  # a refresh token unused this long expires
    session_max_age: timedelta = timedelta(days=90)  # no rotation extends a session past this


class Login:
    def __init__(
        self,
        log: EventLog,
        hasher: PasswordHasher,
        signer: TokenSigner,
        otp: OneTimePasswords,
        box: SecretBox,
        revocations: RevocationList,
        chains: RefreshChains,
        clock: Clock,
        rules: SessionRules,
        refresh_key: bytes,
    ) -> None:
        self._log = log
        self._chains = chains
        self._refresh_key = refresh_key
        self._hasher = hasher
        self._signer = signer
        self._otp = otp
        self._box = box
        self._revocations = revocations
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
            return self._start_session(account.id, client, generation, account)
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

    @traced
    @retried_on_conflict
    def log_out(
        self, principal: AccessClaims, refresh_token: str | None, all_sessions: bool
    ) -> None:
        now = self._clock.now()
        # The denylist is written before the event: should the save fail, the user who asked to
        # be logged out is logged out all the same (fail closed).
        if all_sessions:
            account = self._account(principal.account_id)
            self._revocations.revoke_sessions_before(account.id, cutoff=now, ttl=self._access_ttl)
            account.revoke_all_sessions(now)
            self._log.save(account)
            return
        session_ids = {principal.session_id}
        if refresh_token is not None:
            session_ids.add(self._own_session_id(principal, refresh_token))
        for session_id in session_ids:
            session = self._log.find(session_id, Session)
            if session is None:
                continue
            self._revocations.revoke_session(session.id, ttl=self._access_ttl)
            self._chains.end([session.id])
            session.revoke(now, reason="logout")
            self._log.save(session)

    @traced
    @retried_on_conflict
    def end_session(self, principal: AccessClaims, session_id: UUID) -> None:
        """Ends one of the caller's own sessions (a device they no longer trust)."""
        session = self._log.find(session_id, Session)
        if session is None or session.account_id != principal.account_id:
            raise SessionNotFound  # another account's session is none of the caller's business
        self._revocations.revoke_session(session.id, ttl=self._access_ttl)
        self._chains.end([session.id])
        session.revoke(self._clock.now(), reason="ended_by_user")
        self._log.save(session)

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
            if step is not None:
                account.use_totp(step, now)
            else:
                account.use_recovery_code(recovery_code_digest(code), now)
        except InvalidMfaCode:
            self._record_failure(account_id, factor="mfa")
            raise
        return self._start_session(account.id, client, account.password_generation, account)

    @retried_on_conflict
    def start_passkey_session(
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
        return self._start_session(account.id, client, account.password_generation, account)

    @retried_on_conflict
    def start_external_session(
        self, account_id: UUID, identity_id: str, client: Client
    ) -> TokenPair:
        """A sign-in verified by another identity provider signs in as a password does (the
        same session, trail, mail and lockout reset), its use recorded in the same save."""
        account = self._account(account_id)
        now = self._clock.now()
        account.ensure_not_locked(now)
        if account.disabled:
            raise InvalidCredentials
        account.use_identity(identity_id, now)
        return self._start_session(account.id, client, account.password_generation, account)

    def fail(self, account_id: UUID, factor: str) -> None:
        """A failed sign-in by another factor (a passkey): counts towards the lock."""
        self._record_failure(account_id, factor)

    @retried_on_conflict
    def _start_fresh_session(self, account_id: UUID, client: Client, generation: int) -> TokenPair:
        """A session for an account loaded afresh on each try: a failed login recorded
        meanwhile (the success resets the count) is a conflict to retry, never an error."""
        return self._start_session(account_id, client, generation)

    def _start_session(
        self, account_id: UUID, client: Client, generation: int, account: Account | None = None
    ) -> TokenPair:
        """Saves the session with whatever the account has pending, in one atomic write. The
        session is bound to `generation`, that of the password the login verified."""
        account = account or self._account(account_id)
        now = self._clock.now()
        session_id = uuid4()
        refresh_token = issue_refresh_token(session_id, 0, self._refresh_key)
        session = Session(
            id=session_id,
            account_id=account.id,
            refresh_token_hash=digest(refresh_token),
            expires_at=now + min(self._rules.refresh_idle_ttl, self._rules.session_max_age),
            user_agent=client.user_agent,
            ip=client.ip,
            timestamp=now,
            password_generation=generation,
        )
        account.succeed_login(now)
        self._log.save(account, session)
        self._chains.begin(
            session.id, chain_of(session, self._rules, 0, now), digest(refresh_token)
        )
        # Signed before the re-check: a change that commits after it writes a cutoff later
        # than this token's issue time, so the token is refused even if the re-check passed.
        tokens = self._tokens(account, session, refresh_token)
        self._ensure_still_valid(account.id, generation, session)
        return tokens

    def _ensure_still_valid(self, account_id: UUID, generation: int, session: Session) -> None:
        """A password change (or a disabling) that committed while this login was verifying
        the old password wins: the new session is ended before any token leaves. (One that
        commits later is covered by the cutoff it writes after its own save.)"""
        current = self._account(account_id)
        if current.password_generation != generation or current.disabled:
            self._revocations.revoke_session(session.id, ttl=self._access_ttl)
            self._chains.end([session.id])
            session.revoke(self._clock.now(), reason="password_changed")
            self._log.save(session)
            raise InvalidCredentials

    def _own_session_id(self, principal: AccessClaims, refresh_token: str) -> UUID:
        presented = read_refresh_token(refresh_token, self._refresh_key)
        owner = owner_of(refresh_token) if presented is None else presented.session_id
        session = self._log.find(owner, Session)
        if session is None or session.account_id != principal.account_id:
            raise InvalidRefreshToken
        return session.id

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

    def _tokens(self, account: Account, session: Session, refresh: str) -> TokenPair:
        return token_pair(
            self._signer,
            account.id,
            session.id,
            tuple(account.roles),
            refresh,
            self._clock.now(),
            session.started_at,
        )

    @property
    def _access_ttl(self) -> timedelta:
        """How long a denylist entry must last: until every token it could stop has expired."""
        return timedelta(seconds=self._signer.lifetime_seconds)

    def _account(self, account_id: UUID) -> Account:
        account = self._log.find(account_id, Account)
        if account is None:
            raise InvalidCredentials
        return account


def chain_of(session: Session, rules: SessionRules, turn: int, at: datetime) -> Chain:
    """The chain of a session whose token of turn `turn` was just issued at `at`."""
    return Chain(
        account_id=session.account_id,
        started_at=session.started_at,
        password_generation=session.password_generation,
        turn=turn,
        expires_at=session.expires_at,
        ends_at=session.started_at + rules.session_max_age,
        recorded_at=at,
    )


def token_pair(
    signer: TokenSigner,
    account_id: UUID,
    session_id: UUID,
    roles: tuple[str, ...],
    refresh_token: str,
    at: datetime,
    auth_time: datetime,
) -> TokenPair:
    """What a sign-in or a refresh answers: a new access token beside the refresh token.
    `auth_time` is the session's sign-in: a refresh never makes a session look freshly proven."""
    return TokenPair(
        token_type="Bearer",  # noqa: S106  (RFC 6750 token type, not a secret)
        access_token=signer.issue(account_id, session_id, roles, at, auth_time),
        expires_in=signer.lifetime_seconds,
        refresh_token=refresh_token,
    )
