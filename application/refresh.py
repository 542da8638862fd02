"""Refreshing: one step of the session's refresh-token chain in the shared store, judged against
the account's terms (from this process's copy while the account's mark holds), no event-store
round trip. The event log records when sessions start and end, and their rotations once an
hour."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID

from application.account_views import AccountViews
from application.event_log import EventLog, retried_on_conflict
from application.login import SessionRules, chain_of, token_pair
from application.ports import Chain, Clock, RefreshChains, RevocationList, TokenSigner
from application.tokens import digest, issue_refresh_token, owner_of, read_refresh_token
from application.tracing import traced
from application.views import TokenPair
from domain.account import Account
from domain.errors import AccountNotFound, InvalidRefreshToken, RefreshTokenReused
from domain.session import Session

# How often the event log hears of a session's rotations: the trail keeps each session's first
# rotation, then at most one an hour (when it was last used and until when it lives, to within
# this, and how many tokens it has spent).
RECORD_EVERY = timedelta(hours=1)


class Refresh:
    def __init__(
        self,
        log: EventLog,
        chains: RefreshChains,
        views: AccountViews,
        signer: TokenSigner,
        revocations: RevocationList,
        clock: Clock,
        rules: SessionRules,
        key: bytes,
    ) -> None:
        self._log = log
        self._chains = chains
        self._views = views
        self._signer = signer
        self._revocations = revocations
        self._clock = clock
        self._rules = rules
        self._key = key

    @traced
    async def rotate(self, refresh_token: str) -> TokenPair:
        presented = read_refresh_token(refresh_token, self._key)
        if presented is None:
            # A token from before chains (its session's rotations are in the log), or none.
            return await asyncio.to_thread(self._rotate_in_log, refresh_token)
        session_id = presented.session_id
        now = self._clock.now()
        new_token = issue_refresh_token(session_id, presented.turn + 1, self._key)
        new_digest = digest(new_token)
        step = await self._chains.turn(
            session_id,
            presented.turn,
            digest(refresh_token),
            new_digest,
            now,
            self._rules.refresh_idle_ttl,
            RECORD_EVERY,
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
            await asyncio.to_thread(self._end_reused, session_id)
            raise RefreshTokenReused
        if step.record:
            await asyncio.to_thread(self._record, session_id, chain, new_digest)
        return token_pair(
            self._signer,
            chain.account_id,
            session_id,
            terms.roles,
            new_token,
            now,
            chain.started_at,
        )

    @retried_on_conflict
    def _record(self, session_id: UUID, chain: Chain, token_hash: str) -> None:
        session = self._log.find(session_id, Session)
        if session is None or session.revoked_at is not None:
            return
        session.record_rotations(token_hash, chain.expires_at, chain.turn, self._clock.now())
        self._log.save(session)

    @retried_on_conflict
    def _end_reused(self, session_id: UUID) -> None:
        """A spent token came back: two parties hold the session, and we cannot tell which is
        the thief. The chain is already ended by the step that found it; the log records it."""
        self._revocations.revoke_session(session_id, ttl=self._access_ttl)
        session = self._log.find(session_id, Session)
        if session is None:
            return
        session.reuse_detected(self._clock.now())
        self._log.save(session)

    @retried_on_conflict
    def _rotate_in_log(self, refresh_token: str) -> TokenPair:
        """A session started before chains: its token is checked against the log, as it was
        then, and the rotation starts the session's chain."""
        session = self._log.find(owner_of(refresh_token), Session)
        if session is None:
            raise InvalidRefreshToken
        account = self._log.find(session.account_id, Account)
        if account is None or account.disabled:
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
                account_cutoff=account.session_cutoff(session.id),
                password_generation=account.password_generation_for(
                    session.id, session.password_generation
                ),
            )
        except RefreshTokenReused:
            self._revocations.revoke_session(session.id, ttl=self._access_ttl)
            self._chains.end([session.id])
            self._log.save(session)
            raise
        self._log.save(session)
        # Begun once the save has won: a racing refresh that lost it begins no chain.
        chain = chain_of(session, self._rules, turn=1, at=now)
        self._chains.begin(session.id, chain, digest(new_token))
        return token_pair(
            self._signer,
            account.id,
            session.id,
            tuple(account.roles),
            new_token,
            now,
            session.started_at,
        )

    @property
    def _access_ttl(self) -> timedelta:
        return timedelta(seconds=self._signer.lifetime_seconds)
