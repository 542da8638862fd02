"""A session's life, owned in one place: started by every sign-in kind (password, MFA second
step, passkey, provider), rotated by a refresh (one step of its refresh-token chain in the
shared store, judged against the account's terms, no event-store round trip), ended for a
reason, and cut off with the rest of its account's sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from application.persistence.account_views import AccountViews, trusted
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import (
    AccessClaims,
    Chain,
    Clock,
    RefreshChains,
    RevocationList,
    TokenSigner,
    VersionedKey,
)
from application.tokens import (
    Purposed,
    RefreshToken,
    digest,
    issue_refresh_token,
    owner_of,
    read_refresh_token,
    successor_of,
)
from application.tracing import traced
from application.views import AccountView, Client, TokenPair
from domain.account import Account
from domain.errors import (
    AccountNotFound,
    AuthorizationCodeReused,
    ConsentNotFound,
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshTokenReused,
    ScopeNotAllowed,
    SessionNotFound,
)
from domain.lockout import LockoutPolicy
from domain.session import Session, SessionTerms

# How often the event log hears of a session's rotations: the trail keeps each session's first
# rotation, then at most one an hour (when it was last used and until when it lives, to within
# this, and how many tokens it has spent).
RECORD_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class AppSession:
    """An app's session as its token answers need it: whose, since when, and its refresh
    token (tagged for that app alone)."""

    session_id: UUID
    account_id: UUID
    client_id: str
    started_at: datetime
    refresh_token: str
    scopes: tuple[str, ...]
    audience: str
    # When this step (the exchange, a refresh) began: its access token's issue time, so that
    # a consent cutoff written after the step's checks is later than the token.
    issued_at: datetime
    # The person as the exchange's last read of the account found them, for the ID token's
    # claims without reading the account a third time; None after a refresh.
    person: AccountView | None = None


@dataclass(frozen=True)
class SessionRules:
    require_verified_email: bool = True
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    refresh_idle_ttl: timedelta = timedelta(days=14)  # a refresh token unused this long expires
    session_max_age: timedelta = timedelta(days=90)  # no rotation extends a session past this
    # A token presented again this soon after its own rotation gets the pair it was turned into
    # (two tabs, a retry whose answer was lost), not a theft verdict. Zero: strict.
    reuse_interval: timedelta = timedelta(seconds=10)


class Sessions:
    def __init__(
        self,
        log: EventLog,
        chains: RefreshChains,
        views: AccountViews,
        signer: TokenSigner,
        revocations: RevocationList,
        clock: Clock,
        rules: SessionRules,
        key: bytes | VersionedKey,  # tags refresh tokens (REFRESH_TAGS)
    ) -> None:
        self._log = log
        self._chains = chains
        self._views = views
        self._signer = signer
        self._revocations = revocations
        self._clock = clock
        self._rules = rules
        self._key = key

    # Starting

    def start(
        self, account: Account, client: Client, generation: int, amr: Sequence[str] = ()
    ) -> TokenPair:
        """Saves a new session with whatever the account has pending (the sign-in's success,
        a spent code, a passkey's counter), in one atomic write. The session is bound to
        `generation`, that of the password the sign-in verified; `amr`: how the sign-in
        proved who it was (RFC 8176)."""
        now = self._clock.now()
        session_id = uuid4()
        refresh_token = issue_refresh_token(session_id, 0, self._key)
        session = Session(
            id=session_id,
            account_id=account.id,
            refresh_token_hash=digest(refresh_token),
            expires_at=now + min(self._rules.refresh_idle_ttl, self._rules.session_max_age),
            user_agent=client.user_agent,
            ip=client.ip,
            timestamp=now,
            password_generation=generation,
            amr=list(amr) or None,
        )
        account.succeed_login(now)
        self._log.save(account, session)
        self._chains.begin(
            session.id, chain_of(session, self._rules, 0, now), digest(refresh_token)
        )
        # Signed before the re-check: a change that commits after it writes a cutoff later
        # than this token's issue time, so the token is refused even if the re-check passed.
        tokens = self._pair(account.id, session.id, tuple(account.roles), refresh_token, session)
        self._ensure_still_valid(account.id, generation, session)
        return tokens

    def _ensure_still_valid(
        self, account_id: UUID, generation: int, session: Session, consent_of: str | None = None
    ) -> Account:
        """A password change (or a disabling) that committed while this sign-in was verifying
        the old password wins: the new session is ended before any token leaves; so does the
        withdrawal of the consent of the app `consent_of` (an app's session). (One that
        commits later is covered by the cutoff it writes after its own save.)"""
        current = self._account(account_id)
        if current.password_generation != generation or current.disabled:
            self._end(session.id, "password_changed")
            raise InvalidCredentials
        if consent_of is not None and consent_of not in current.consented_clients():
            self._end(session.id, "consent_revoked")
            raise ConsentNotFound
        return current

    def start_app(
        self,
        account_id: UUID,
        client_id: str,
        browser_session_id: UUID,
        client: Client,
        session_id: UUID,
        scopes: Collection[str],
        audience: str,
    ) -> AppSession:
        """An app's session, started by exchanging a code the person's browser session
        (`browser_session_id`) got it: a Session like any other, so that whatever ends the
        account's sessions ends it too. `session_id`: chosen by the caller, who remembers it
        with the spent code (a second use of the code ends this session).

        Only the new Session's stream is written, never the Account's: one person's exchanges
        never race each other (issue #22). The app's consent reaches its sessions another
        way: withdrawing it writes a cutoff for (account, app) in the shared store, which the
        app's access tokens and refresh chains answer to (see `cutting_off_app`); and the
        consent is read again after the save, so a withdrawal that committed meanwhile ends
        this session before any token leaves (one that commits later writes its cutoff after
        its save, later than this session's start and its first token)."""
        now = self._clock.now()
        # The shared store is asked before the account is read and again once the chain has
        # begun, in one round trip each: the second answer says whether this session was ended
        # meanwhile, and whether the account changed since it was read (its change mark).
        claims = AccessClaims(
            account_id, session_id, (), issued_at=now.timestamp(), client_id=client_id
        )
        before = self._revocations.standing_now(claims)
        if before.ended:
            raise AuthorizationCodeReused(session_id)  # nothing saved: nothing to end
        try:
            read = self._views.cached(account_id, before.mark) or self._views.load(
                account_id, before.mark
            )
        except AccountNotFound:
            raise InvalidCredentials from None
        if not read.terms.open:
            raise InvalidCredentials
        if client_id not in read.consented_clients:
            raise ConsentNotFound
        generation = read.terms.password_generation
        refresh_token = issue_refresh_token(session_id, 0, self._app_key(client_id))
        session = Session(
            id=session_id,
            account_id=account_id,
            refresh_token_hash=digest(refresh_token),
            expires_at=now + min(self._rules.refresh_idle_ttl, self._rules.session_max_age),
            user_agent=client.user_agent,
            ip=client.ip,
            timestamp=now,
            password_generation=generation,
            client_id=client_id,
            browser_session_id=browser_session_id,
            scopes=list(scopes),
            audience=audience,
        )
        self._log.save(session)
        # An online session (not offline_access) ends when its browser session signs out.
        online = None if "offline_access" in scopes else browser_session_id
        chain = replace(chain_of(session, self._rules, 0, now), browser_session_id=online)
        self._chains.begin(session.id, chain, digest(refresh_token))
        # Looked at once the chain has begun. A second use of the code that ended this session
        # before it was saved (so found nothing to end) is caught here; one that comes after
        # this look finds the session and its chain, and ends them itself.
        after = self._revocations.standing_now(claims)
        if after.ended:
            self._end(session.id, "code_reused")
            raise AuthorizationCodeReused(session.id)
        person = read.view
        if after.revoked or after.mark != before.mark or not trusted(before.mark):
            # The account changed (or may have) since it was read: read again, and a password
            # change, a disabling or a withdrawn consent that committed meanwhile ends this
            # session before any token leaves. With the mark unchanged no save of the account
            # has begun since the read (each marks it changing first), so the read stands.
            current = self._ensure_still_valid(account_id, generation, session, client_id)
            person = AccountView.of(current)
        return AppSession(
            session.id,
            account_id,
            client_id,
            now,
            refresh_token,
            tuple(scopes),
            audience,
            now,
            person,
        )

    def _app_key(self, client_id: str) -> Purposed:
        return Purposed(self._key, f"app-refresh|{client_id}")

    # Rotating

    @traced
    async def rotate(self, refresh_token: str) -> TokenPair:
        presented = read_refresh_token(refresh_token, self._key)
        if presented is None:
            # A token from before chains (its session's rotations are in the log), or none.
            return await asyncio.to_thread(self._rotate_in_log, refresh_token)
        session_id, chain, new_token, terms, now = await self._turn(
            refresh_token, presented, self._key
        )
        return token_pair(
            self._signer,
            chain.account_id,
            session_id,
            terms.roles,
            new_token,
            now,
            chain.started_at,
        )

    @traced
    async def rotate_app(
        self, refresh_token: str, client_id: str, scopes: Collection[str] = ()
    ) -> AppSession:
        """One turn of an app session's chain, by the same rule as tessera's own sessions
        (reuse ends the session). A token of another app, or of tessera's own sessions, reads
        as forged here: InvalidRefreshToken. `scopes`: narrower than the session's, for this
        turn's tokens (none: the session's own); a scope the session was not granted is
        ScopeNotAllowed, before the turn, so the token presented stays good."""
        key = self._app_key(client_id)
        presented = read_refresh_token(refresh_token, key)
        if presented is None:
            raise InvalidRefreshToken
        session = await asyncio.to_thread(self._log.find, presented.session_id, Session)
        # getattr: a snapshot of a session from before apps lacks these
        if session is None or getattr(session, "client_id", None) != client_id:
            raise InvalidRefreshToken
        granted = tuple(session.scopes or ())
        wider = [scope for scope in scopes if scope not in granted]
        if wider:
            raise ScopeNotAllowed(" ".join(wider))
        session_id, chain, new_token, terms, now = await self._turn(refresh_token, presented, key)
        # The app's consent withdrawn since the session started, as the account says (durable:
        # the shared store's cutoff below is forgotten once it has lasted as long as a session
        # could when it was written, which a SESSION_MAX_AGE raised since outlasts) or as the
        # cutoff says (a withdrawal whose save the account read missed): the turn taken is
        # never used.
        if not terms.consented(client_id, chain.started_at):
            raise InvalidRefreshToken
        standing = await self._revocations.standing(
            AccessClaims(
                account_id=chain.account_id,
                session_id=session_id,
                roles=(),
                issued_at=chain.started_at.timestamp(),
                client_id=client_id,
            )
        )
        if standing.revoked:
            raise InvalidRefreshToken
        return AppSession(
            session_id,
            chain.account_id,
            client_id,
            chain.started_at,
            new_token,
            tuple(s for s in granted if s in scopes) if scopes else granted,
            session.audience or "",
            now,
        )

    def app_session_of(self, refresh_token: str, client_id: str) -> UUID | None:
        """The app session a refresh token of this client's names; None for any other token."""
        presented = read_refresh_token(refresh_token, self._app_key(client_id))
        return None if presented is None else presented.session_id

    async def _turn(
        self, refresh_token: str, presented: RefreshToken, key: bytes | VersionedKey | Purposed
    ) -> tuple[UUID, Chain, str, SessionTerms, datetime]:
        session_id = presented.session_id
        now = self._clock.now()
        # Derived, not random: the same token is turned into the same successor, so it can be
        # given again within the reuse interval while only its digest is kept.
        new_token = successor_of(refresh_token, presented, key)
        new_digest = digest(new_token)
        step = await self._chains.turn(
            session_id,
            presented.turn,
            digest(refresh_token),
            new_digest,
            now,
            self._rules.refresh_idle_ttl,
            RECORD_EVERY,
            self._rules.reuse_interval,
        )
        chain = step.chain
        if chain is None:
            raise InvalidRefreshToken
        copy = self._views.cached(chain.account_id, step.mark)
        if copy is None:
            try:
                copy = await asyncio.to_thread(self._views.load, chain.account_id, step.mark)
            except AccountNotFound:
                raise InvalidRefreshToken from None
        # Judged after the step: what the account refuses (a cutoff, a password changed, an
        # account disabled or erased) it refuses for good, so the turn taken is never missed;
        # and a spent token of a session the account had already ended is no theft.
        terms = copy.terms
        if not terms.admit(session_id, chain.started_at, chain.password_generation):
            raise InvalidRefreshToken
        if step.spent:
            await asyncio.to_thread(self._end, session_id, "refresh_token_reuse")
            raise RefreshTokenReused
        if step.record:
            await asyncio.to_thread(self._record, session_id, chain, new_digest)
        return session_id, chain, new_token, terms, now

    @retried_on_conflict
    def _record(self, session_id: UUID, chain: Chain, token_hash: str) -> None:
        session = self._log.find(session_id, Session)
        if session is None or session.revoked_at is not None:
            return
        session.record_rotations(token_hash, chain.expires_at, chain.turn, self._clock.now())
        self._log.save(session)

    @retried_on_conflict
    def _rotate_in_log(self, refresh_token: str) -> TokenPair:
        """A session started before chains: its token is checked against the log, as it was
        then, and the rotation starts the session's chain."""
        session = self._log.find(owner_of(refresh_token), Session)
        if session is None:
            raise InvalidRefreshToken
        account = self._log.find(session.account_id, Account)
        if account is None:
            raise InvalidRefreshToken
        now = self._clock.now()
        new_token = issue_refresh_token(session.id, 1, self._key)
        expires_at = min(
            now + self._rules.refresh_idle_ttl, session.started_at + self._rules.session_max_age
        )
        try:
            session.refresh(
                presented_hash=digest(refresh_token),
                new_hash=digest(new_token),
                expires_at=expires_at,
                at=now,
                terms=account.session_terms(),
            )
        except RefreshTokenReused:
            self._stop(session.id)
            self._log.save(session)  # the reuse and the end, recorded by the session's rule
            raise
        self._log.save(session)
        # Begun once the save has won: a racing refresh that lost it begins no chain.
        chain = chain_of(session, self._rules, turn=1, at=now)
        self._chains.begin(session.id, chain, digest(new_token))
        return self._pair(account.id, session.id, tuple(account.roles), new_token, session)

    # Ending

    @traced
    @retried_on_conflict
    def log_out(
        self, principal: AccessClaims, refresh_token: str | None, all_sessions: bool
    ) -> None:
        if all_sessions:
            with self.cutting_off(principal.account_id) as now:
                account = self._account(principal.account_id)
                account.revoke_all_sessions(now)
                self._log.save(account)
            return
        session_ids = {principal.session_id}
        if refresh_token is not None:
            session_ids.add(self._own_session_id(principal, refresh_token))
        for session_id in session_ids:
            self._end(session_id, "logout")

    @traced
    def sign_out_browser(self, principal: AccessClaims, refresh_token: str | None) -> None:
        """Signs a browser's page session out (its sign-out button, an app's RP-Initiated
        Logout), and with it the apps' sessions started from it, but those given
        offline_access: as Keycloak ends the online client sessions of an SSO session, while an
        app the person let act while they are away keeps its session until they withdraw its
        consent. (A sign-in asked again, prompt=login, is not a sign-out: it uses log_out.)"""
        self.log_out(principal, refresh_token, all_sessions=False)
        for session_id in self._online_app_sessions(principal.account_id, principal.session_id):
            self._end(session_id, "logout")

    def _online_app_sessions(self, account_id: UUID, browser_session_id: UUID) -> list[UUID]:
        """Found by their chains (begun with the browser session's id when online), not by the
        account, whose stream an app's sign-in does not write."""
        found = (self._log.find(i, Session) for i in self._chains.online_of(browser_session_id))
        return [
            session.id
            for session in found
            if session is not None
            and session.account_id == account_id
            and session.revoked_at is None
            and session.browser_session_id == browser_session_id
            and "offline_access" not in (session.scopes or ())
        ]

    @traced
    def end(self, principal: AccessClaims, session_id: UUID) -> None:
        """Ends one of the caller's own sessions (a device they no longer trust)."""
        session = self._log.find(session_id, Session)
        if session is None or session.account_id != principal.account_id:
            raise SessionNotFound  # another account's session is none of the caller's business
        self._end(session_id, "ended_by_user")

    def amr_of(self, session_id: UUID, account_id: UUID) -> tuple[str, ...]:
        """How the account's session `session_id` was signed in (RFC 8176); () when unknown."""
        session = self._log.find(session_id, Session)
        if session is None or session.account_id != account_id:
            return ()
        return tuple(getattr(session, "amr", None) or ())

    def end_app_session(self, session_id: UUID, reason: str) -> None:
        """Ends an app's session (its consent withdrawn, revoked by its app)."""
        self._end(session_id, reason)

    def end_spent_code_session(self, session_id: UUID) -> None:
        """Ends the app session a code's first use started, on the code's second use (RFC
        6749, 4.1.2). The first use may still be on its way (its session not saved, its chain
        not begun), so the end is kept as long as the session could have lived, and
        start_app looks for it once its chain has begun: in either order the session ends."""
        self._revocations.revoke_session(session_id, ttl=self._lasting)
        self._end(session_id, "code_reused")

    @retried_on_conflict
    def _end(self, session_id: UUID, reason: str) -> None:
        """The session's access tokens stop and its chain ends before the event is recorded:
        should the save fail, the session is over all the same (fail closed)."""
        self._stop(session_id)
        session = self._log.find(session_id, Session)
        if session is None:
            return
        now = self._clock.now()
        if reason == "refresh_token_reuse":
            # Two parties held the session, and we cannot tell which is the thief.
            session.reuse_detected(now)
        else:
            session.revoke(now, reason=reason)
        self._log.save(session)

    def _stop(self, session_id: UUID) -> None:
        self._revocations.revoke_session(session_id, ttl=self._access_ttl)
        self._chains.end([session_id])

    def _own_session_id(self, principal: AccessClaims, refresh_token: str) -> UUID:
        presented = read_refresh_token(refresh_token, self._key)
        owner = owner_of(refresh_token) if presented is None else presented.session_id
        session = self._log.find(owner, Session)
        if session is None or session.account_id != principal.account_id:
            raise InvalidRefreshToken
        return session.id

    # Cutting off

    @contextmanager
    def cutting_off(
        self, account_id: UUID, at: datetime | None = None, keep: UUID | None = None
    ) -> Iterator[datetime]:
        """Around the save of a change that ends all of an account's sessions but `keep` (a
        sign-out everywhere, a password change or reset, a disabling, an erasure). The denylist
        cutoff is written before the save, so should the save fail the sessions are over all
        the same (fail closed), and again after it: a sign-in or a refresh that raced the
        change (its token issued after the first cutoff, its account read before the save)
        is cut off too."""
        at = at or self._clock.now()
        self._revocations.revoke_sessions_before(
            account_id, cutoff=at, ttl=self._access_ttl, keep=keep
        )
        yield at
        self._revocations.revoke_sessions_before(
            account_id, cutoff=self._clock.now(), ttl=self._access_ttl, keep=keep
        )

    @contextmanager
    def cutting_off_app(self, account_id: UUID, client_id: str) -> Iterator[datetime]:
        """Around the save of a consent's withdrawal: every session of the account with the app
        started, and every access token issued to it, up to the cutoff is refused (the shared
        store's entry lasts as long as a session may). Written before the save (should the
        save fail, the sessions are over all the same) and again after it: an exchange or a
        refresh that raced the withdrawal (its consent read before the save) is cut off too."""
        ttl = max(self._rules.session_max_age, self._access_ttl)
        at = self._clock.now()
        self._revocations.revoke_app_sessions_before(account_id, client_id, at, ttl)
        yield at
        self._revocations.revoke_app_sessions_before(account_id, client_id, self._clock.now(), ttl)

    def _pair(
        self,
        account_id: UUID,
        session_id: UUID,
        roles: tuple[str, ...],
        refresh_token: str,
        session: Session,
    ) -> TokenPair:
        return token_pair(
            self._signer,
            account_id,
            session_id,
            roles,
            refresh_token,
            self._clock.now(),
            session.started_at,
        )

    @property
    def _lasting(self) -> timedelta:
        """Longer than any session lives, or any of its access tokens."""
        return max(self._rules.session_max_age, self._access_ttl)

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
