"""First-party access tokens: JWTs signed with Ed25519 (RFC 8037), verified with the algorithm
pinned."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import jwt

from application.ports import AccessClaims
from domain.errors import InvalidAccessToken, InvalidMfaToken
from infrastructure.signing_keys import EDDSA, SigningKeys

_TYPE = "at+jwt"  # RFC 9068: marks access tokens, so no other JWT of ours can pass for one
_MFA_TYPE = "mfa+jwt"  # between the password and the second factor; never an access token
_MFA_LIFETIME_SECONDS = 300
_REQUIRED = ["iss", "aud", "sub", "sid", "jti", "iat", "exp"]
_CLOCK_SKEW_SECONDS = 30  # between API processes: a token minted "in the future" by a peer


class Ed25519Signer:
    """First-party tokens: always EdDSA, whatever else the key set signs with, so an RS256 or
    ES256 token (an ID token, or an access token issued to another app) is never one of them."""

    def __init__(
        self, keys: SigningKeys, issuer: str, audience: str, lifetime_seconds: int
    ) -> None:
        if EDDSA not in keys.algorithms:
            raise ValueError("first-party tokens need an Ed25519 signing key")
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime_seconds

    @property
    def lifetime_seconds(self) -> int:
        return self._lifetime

    def issue(
        self,
        account_id: UUID,
        session_id: UUID,
        roles: tuple[str, ...],
        at: datetime,
        auth_time: datetime,
    ) -> str:
        issued_at = at.timestamp()
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(account_id),
            "sid": str(session_id),
            "jti": uuid4().hex,
            # Fractional seconds (RFC 7519 NumericDate allows them) so that "revoke everything
            # issued up to now" cannot catch a token issued later in the same second.
            "iat": issued_at,
            "exp": int(issued_at) + self._lifetime,
            "roles": list(roles),
            "auth_time": int(auth_time.timestamp()),
        }
        return self._keys.sign(claims, EDDSA, _TYPE)

    def verify(self, token: str, at: datetime) -> AccessClaims:
        try:
            # The kid only picks among our own EdDSA keys (the current one, or one kept through a
            # rotation); the type is checked from what the verification decoded.
            key = self._keys.verifying_key(jwt.get_unverified_header(token).get("kid"), EDDSA)
            if key is None:
                raise InvalidAccessToken
            decoded = jwt.decode_complete(
                token,
                key,
                algorithms=[EDDSA],
                audience=self._audience,
                issuer=self._issuer,
                # Time is checked below against the injected clock, not the wall clock.
                options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False},
            )
            header, claims = decoded["header"], decoded["payload"]
            # client_id: an access token issued to another app (RFC 9068), even one we signed
            # for our own audience, is never a first-party session.
            if header.get("typ") != _TYPE or "client_id" in claims:
                raise InvalidAccessToken
            now = at.timestamp()
            if not (
                claims["iat"] <= now + _CLOCK_SKEW_SECONDS and now < claims["exp"]
            ) or not isinstance(claims["roles"], list):
                raise InvalidAccessToken
            auth_time = claims.get("auth_time")
            return AccessClaims(
                account_id=UUID(claims["sub"]),
                session_id=UUID(claims["sid"]),
                roles=tuple(str(role) for role in claims["roles"]),
                issued_at=float(claims["iat"]),
                auth_time=None if auth_time is None else float(auth_time),
            )
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as error:
            raise InvalidAccessToken from error

    def issue_mfa_token(self, account_id: UUID, at: datetime) -> str:
        claims = {
            "iss": self._issuer,
            "aud": f"{self._audience}:mfa",
            "sub": str(account_id),
            "jti": uuid4().hex,
            "iat": int(at.timestamp()),
            "exp": int(at.timestamp()) + _MFA_LIFETIME_SECONDS,
        }
        return self._keys.sign(claims, EDDSA, _MFA_TYPE)

    def verify_mfa_token(self, token: str, at: datetime) -> UUID:
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.verifying_key(header.get("kid"), EDDSA)
            if key is None or header.get("typ") != _MFA_TYPE:
                raise InvalidMfaToken
            claims = jwt.decode(
                token,
                key,
                algorithms=[EDDSA],
                audience=f"{self._audience}:mfa",
                issuer=self._issuer,
                options={
                    "require": ["iss", "aud", "sub", "iat", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
            now = at.timestamp()
            if not (claims["iat"] <= now + _CLOCK_SKEW_SECONDS and now < claims["exp"]):
                raise InvalidMfaToken
            return UUID(claims["sub"])
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as error:
            raise InvalidMfaToken from error

    def jwks(self) -> dict[str, Any]:
        return self._keys.jwks()
