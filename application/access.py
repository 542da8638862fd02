"""Deciding whether a bearer access token still speaks for its session."""

from __future__ import annotations

from application.ports import AccessClaims, Clock, RevocationList, TokenSigner
from domain.errors import InvalidAccessToken


class Access:
    """Checks a token without reading the event store: a signature check and one denylist lookup."""

    def __init__(self, signer: TokenSigner, revocations: RevocationList, clock: Clock) -> None:
        self._signer = signer
        self._revocations = revocations
        self._clock = clock

    def authenticate(self, token: str) -> AccessClaims:
        claims = self._signer.verify(token, at=self._clock.now())
        if self._revocations.is_revoked(claims):
            raise InvalidAccessToken
        return claims
