"""Access tokens: JWTs signed with Ed25519 (RFC 8037), verified with the algorithm pinned."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from application.ports import AccessClaims
from domain.errors import InvalidAccessToken, InvalidMfaToken

_ALGORITHM = "EdDSA"
_TYPE = "at+jwt"  # RFC 9068: marks access tokens, so no other JWT of ours can pass for one
_MFA_TYPE = "mfa+jwt"  # between the password and the second factor; never an access token
_MFA_LIFETIME_SECONDS = 300
_REQUIRED = ["iss", "aud", "sub", "sid", "jti", "iat", "exp"]
_CLOCK_SKEW_SECONDS = 30  # between API processes: a token minted "in the future" by a peer


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: a kid that names the key itself."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Ed25519Signer:
    def __init__(
        self, key: Ed25519PrivateKey, issuer: str, audience: str, lifetime_seconds: int
    ) -> None:
        self._key = key
        self._public_key = key.public_key()
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime_seconds
        jwk: dict[str, Any] = json.loads(OKPAlgorithm.to_jwk(self._public_key))
        self._kid = _thumbprint(jwk)
        self._jwk = {**jwk, "kid": self._kid, "use": "sig", "alg": _ALGORITHM}

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
        headers = {"kid": self._kid, "typ": _TYPE}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers=headers)

    def verify(self, token: str, at: datetime) -> AccessClaims:
        try:
            # One parse: the header is checked from what the verification decoded (the token is
            # parsed once per request on the hottest path), never trusted before it.
            decoded = jwt.decode_complete(
                token,
                self._public_key,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                # Time is checked below against the injected clock, not the wall clock.
                options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False},
            )
            header, claims = decoded["header"], decoded["payload"]
            if header.get("kid") != self._kid or header.get("typ") != _TYPE:
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
        headers = {"kid": self._kid, "typ": _MFA_TYPE}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers=headers)

    def verify_mfa_token(self, token: str, at: datetime) -> UUID:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self._kid or header.get("typ") != _MFA_TYPE:
                raise InvalidMfaToken
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[_ALGORITHM],
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
        return {"keys": [self._jwk]}
