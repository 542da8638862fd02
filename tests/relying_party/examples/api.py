"""An API of yours that accepts tessera's access tokens (RFC 9068 JWTs): checked offline with
PyJWT against tessera's published keys, and, where a revoked token must stop at once, asked
about with introspection (RFC 7662)."""

from __future__ import annotations

from typing import Any

import httpx
import jwt


class AccessTokens:
    def __init__(self, issuer: str, audience: str) -> None:
        self.issuer = issuer  # tessera's PUBLIC_URL (JWT_ISSUER)
        self.audience = audience  # this API: a resource its clients are registered for
        metadata = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()
        self.keys = jwt.PyJWKClient(metadata["jwks_uri"])  # cached; refetched for a new kid
        self.introspection_endpoint = metadata["introspection_endpoint"]

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims, if tessera signed it as an access token for this API and it has
        not expired; else jwt.InvalidTokenError. A revoked token still passes until its exp."""
        # An ID token, or any other JWT tessera signs, is not an access token (RFC 9068 §4).
        if jwt.get_unverified_header(token).get("typ", "").lower() not in {
            "at+jwt",
            "application/at+jwt",
        }:
            raise jwt.InvalidTokenError("not an access token")
        claims: dict[str, Any] = jwt.decode(
            token,
            self.keys.get_signing_key_from_jwt(token),
            algorithms=["RS256"],  # never the algorithm the token names
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "sub", "client_id", "scope"]},
        )
        return claims

    def active_claims(
        self, token: str, client_id: str, client_secret: str
    ) -> dict[str, Any] | None:
        """Tessera's word on the token now (a revoked one is inactive at once), with this API's
        own client credentials; None unless it is active, from this issuer, for this API."""
        answer = httpx.post(
            self.introspection_endpoint,
            data={"token": token},
            auth=(client_id, client_secret),
            timeout=5,
        )
        answer.raise_for_status()
        claims: dict[str, Any] = answer.json()
        audiences = claims.get("aud", [])
        if isinstance(audiences, str):
            audiences = [audiences]
        if not claims.get("active") or claims.get("iss") != self.issuer:
            return None
        if self.audience not in audiences:
            return None  # active, but meant for another API
        return claims
