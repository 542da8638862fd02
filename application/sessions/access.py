"""Deciding whether a bearer access token still speaks for its session."""

from __future__ import annotations

from application.ports import Caller, Clock, RevocationList, TokenSigner
from domain.errors import InvalidAccessToken


class Access:
    """Checks a token without reading the event store: a signature check, then one look-up of
    shared state (one Redis MGET in production) that also says whether the account changed."""

    def __init__(self, signer: TokenSigner, revocations: RevocationList, clock: Clock) -> None:
        self._signer = signer
        self._revocations = revocations
        self._clock = clock

    async def authenticate(self, token: str) -> Caller:
        claims = self._signer.verify(token, at=self._clock.now())
        standing = await self._revocations.standing(claims)
        if standing.revoked:
            raise InvalidAccessToken
        return Caller(
            account_id=claims.account_id,
            session_id=claims.session_id,
            roles=claims.roles,
            issued_at=claims.issued_at,
            auth_time=claims.auth_time,
            mark=standing.mark,
            written=standing.written,
        )
