"""The tokens an app gets for a person (OpenID Connect): access tokens in the RFC 9068 profile,
ID tokens (OIDC Core 2), and the claims userinfo answers (5.3). Every access token names the
app session it belongs to (`sid`), so whatever ends that session, or cuts off its account,
stops the token at the next standing check (userinfo, introspection); an API that verifies it
offline accepts it until it expires (ACCESS_TOKEN_TTL).

Nothing here parses the protocol: the authorization server (Authlib, in interfaces) has read
the request, authenticated the client and checked the code or the refresh token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from application.clients.machine_tokens import ALGORITHM, TOKEN_TYPE
from application.clients.registry import ClientView
from application.persistence.account_views import AccountViews
from application.ports import AccessClaims, ClaimSigner, Clock, RevocationList
from application.sessions.lifecycle import AppSession
from application.views import AccountView
from domain.errors import InvalidAccessToken, ResourceNotAllowed

ID_TOKEN_TYPE = "JWT"  # noqa: S105 - OIDC Core's ID tokens are plain JWTs
# Standard claims by the scope that releases them (OIDC Core 5.4), of those tessera holds.
CLAIMS_OF_SCOPE = {
    "profile": ("name", "preferred_username"),
    "email": ("email", "email_verified"),
}
CLAIMS_SUPPORTED = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "sid",
    "at_hash",
    "amr",
    "acr",
    "name",
    "preferred_username",
    "email",
    "email_verified",
]

# How sure the sign-in behind a token is (OIDC Core 2, `acr`), from how it was proven (`amr`):
# a password alone, or a second factor or a passkey (possession, and a PIN or biometric the
# authenticator checked). A sign-in with another provider says neither: no `acr` then.
ACR_PASSWORD = "urn:tessera:acr:password"  # noqa: S105 - a level's name
ACR_MFA = "urn:tessera:acr:mfa"
ACR_VALUES = [ACR_PASSWORD, ACR_MFA]


def acr_for(amr: Collection[str]) -> str | None:
    if "mfa" in amr or "hwk" in amr:
        return ACR_MFA
    return ACR_PASSWORD if "pwd" in amr else None


def released(account_id: UUID, view: AccountView, scopes: Collection[str]) -> dict[str, Any]:
    """The person's claims the scopes release (OIDC Core 5.4), from the account as `view`
    shows it: a code exchange has just read it, userinfo has its copy."""
    claims: dict[str, Any] = {"sub": str(account_id)}
    if "profile" in scopes:
        claims["preferred_username"] = view.username
        if view.display_name:
            claims["name"] = view.display_name
    if "email" in scopes:
        claims["email"] = view.email
        claims["email_verified"] = view.email_verified
    return claims


@dataclass(frozen=True)
class PersonToken:
    access_token: str
    expires_in: int
    scope: str


class PersonTokens:
    def __init__(
        self,
        views: AccountViews,
        signer: ClaimSigner,
        revocations: RevocationList,
        clock: Clock,
        issuer: str,
        userinfo_audience: str,
        lifetime_seconds: int,
    ) -> None:
        self._views = views
        self._signer = signer
        self._revocations = revocations
        self._clock = clock
        self._issuer = issuer
        self.userinfo_audience = userinfo_audience
        self._lifetime = lifetime_seconds

    def audience_for(self, client: ClientView, resources: Collection[str]) -> str:
        """The API the token is for: the one RFC 8707 resource asked for, if registered for
        the client; else userinfo (never JWT_AUDIENCE: the token is no first-party session)."""
        if not resources:
            return self.userinfo_audience
        if len(resources) > 1 or next(iter(resources)) not in client.resources:
            raise ResourceNotAllowed(" ".join(resources))
        return next(iter(resources))

    def access_token(self, app: AppSession) -> PersonToken:
        # The step's own time, taken before its checks: a consent cutoff written after them is
        # later than the token (AppSession.issued_at).
        issued_at = int(app.issued_at.timestamp())
        scope = " ".join(app.scopes)
        claims = {
            "iss": self._issuer,
            "sub": str(app.account_id),
            "client_id": app.client_id,
            "aud": app.audience,
            "scope": scope,
            "sid": str(app.session_id),
            "jti": str(uuid4()),
            "iat": issued_at,
            "exp": issued_at + self._lifetime,
        }
        return PersonToken(self._signer.sign(claims, ALGORITHM, TOKEN_TYPE), self._lifetime, scope)

    def id_token(
        self,
        client: ClientView,
        app: AppSession,
        claims: Mapping[str, Any],
        half_hash: Callable[[str, str], str | None],
        access_token: str,
    ) -> str:
        """`claims`: the sign-in's (auth_time, nonce, sid of the browser session...) and the
        person's released by scope; `half_hash`: at_hash's, the protocol library's (OIDC Core
        3.1.3.6, by the ID token's algorithm)."""
        algorithm = client.id_token_signed_response_alg
        issued_at = int(self._clock.now().timestamp())
        token = {
            **claims,
            "iss": self._issuer,
            "sub": str(app.account_id),
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": issued_at,
            "exp": issued_at + self._lifetime,
        }
        at_hash = half_hash(access_token, algorithm)
        if at_hash is not None:
            token["at_hash"] = at_hash
        return self._signer.sign(token, algorithm, ID_TOKEN_TYPE)

    async def person_claims(
        self, account_id: UUID, scopes: Collection[str], mark: str | None = None
    ) -> dict[str, Any]:
        """The person's claims the scopes release, as the account stands now: from this
        process's copy while the account's change mark (`mark`, read with the revocation
        check) is the one it was made under, as /me reads it; else from the event store."""
        copy = self._views.cached(account_id, mark)
        if copy is None:
            copy = await asyncio.to_thread(self._views.load, account_id, mark)
        return released(account_id, copy.view, scopes)

    async def verified(self, token: str, audience: str | None = None) -> dict[str, Any]:
        """The claims of one of our person access tokens, still standing (its app session not
        ended, its account not cut off), for `audience` when given; InvalidAccessToken for
        anything else: a first-party token, a machine token, another API's, an expired one."""
        claims, _ = await self._standing(token, audience)
        return claims

    async def _standing(
        self, token: str, audience: str | None
    ) -> tuple[dict[str, Any], str | None]:
        """verified()'s claims, and the account's change mark read with the revocation check."""
        claims = self._signer.verify(token, ALGORITHM, TOKEN_TYPE)
        if claims is None or claims.get("iss") != self._issuer or "sid" not in claims:
            raise InvalidAccessToken
        if audience is not None and claims.get("aud") != audience:
            raise InvalidAccessToken
        try:
            now = self._clock.now().timestamp()
            if not (float(claims["iat"]) <= now + 60 and now < float(claims["exp"])):
                raise InvalidAccessToken
            standing = await self._revocations.standing(
                AccessClaims(
                    account_id=UUID(str(claims["sub"])),
                    session_id=UUID(str(claims["sid"])),
                    roles=(),
                    issued_at=float(claims["iat"]),
                    client_id=str(claims["client_id"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidAccessToken from None
        if standing.revoked:
            raise InvalidAccessToken
        return claims, standing.mark

    async def userinfo(self, token: str) -> tuple[str, dict[str, Any]]:
        """The app the token was issued to, and the person's claims its scope lets it have."""
        claims, mark = await self._standing(token, self.userinfo_audience)
        scopes = str(claims.get("scope", "")).split()
        if "openid" not in scopes:
            raise InvalidAccessToken  # OIDC Core 5.3: userinfo is for OpenID Connect requests
        person = await self.person_claims(UUID(str(claims["sub"])), scopes, mark)
        return str(claims.get("client_id", "")), person
