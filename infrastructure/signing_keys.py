"""The keys tokens are signed with, one per algorithm, and the previous ones that still verify
during a rotation: together, the JWKS served at /.well-known/jwks.json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from joserfc.jwk import JWKRegistry
from jwt.algorithms import get_default_algorithms

EDDSA, RS256, ES256 = "EdDSA", "RS256", "ES256"
VerifyingKey = Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey


def algorithm_of(key: PublicKeyTypes) -> str:
    """The one algorithm a key signs with: a key never serves two (RFC 8725 §3.1)."""
    if isinstance(key, Ed25519PublicKey):
        return EDDSA
    if isinstance(key, rsa.RSAPublicKey):
        return RS256
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return ES256
    raise ValueError(f"no signing algorithm for a {type(key).__name__}")


@dataclass(frozen=True)
class PublishedKey:
    algorithm: str
    kid: str  # RFC 7638 thumbprint: names the key itself, the same in every process
    public: VerifyingKey
    jwk: dict[str, Any]


def published(public: PublicKeyTypes) -> PublishedKey:
    algorithm = algorithm_of(public)
    assert isinstance(public, VerifyingKey)  # algorithm_of refuses any other
    jwk: dict[str, Any] = dict(get_default_algorithms()[algorithm].to_jwk(public, as_dict=True))
    kid = JWKRegistry.import_key(jwk).thumbprint()
    return PublishedKey(algorithm, kid, public, {**jwk, "kid": kid, "use": "sig", "alg": algorithm})


class SigningKeys:
    """Implements application.ports.ClaimSigner: signs with the current key of the algorithm
    asked for; verifies with it or with a previous one of that algorithm, found by kid."""

    def __init__(
        self, signing: Sequence[PrivateKeyTypes], previous: Sequence[PublicKeyTypes] = ()
    ) -> None:
        self._private: dict[str, PrivateKeyTypes] = {}
        self._current: dict[str, PublishedKey] = {}
        for key in signing:
            if not isinstance(
                key, (Ed25519PrivateKey, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)
            ):
                raise ValueError(f"no signing algorithm for a {type(key).__name__}")
            public = published(key.public_key())
            if public.algorithm in self._current:
                raise ValueError(f"two signing keys for {public.algorithm}")
            self._private[public.algorithm] = key
            self._current[public.algorithm] = public
        self._by_kid = {key.kid: key for key in self._current.values()}
        for older in map(published, previous):
            self._by_kid.setdefault(older.kid, older)  # a current key listed again stays current
        self._jwks = {"keys": [key.jwk for key in self._by_kid.values()]}

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self._current)

    def kid(self, algorithm: str) -> str:
        return self._current[algorithm].kid

    def sign(self, claims: Mapping[str, Any], algorithm: str, token_type: str) -> str:
        current = self._current.get(algorithm)
        if current is None:
            raise ValueError(f"no signing key for {algorithm}")
        return jwt.encode(
            dict(claims),
            self._private[algorithm],  # type: ignore[arg-type]  # the algorithm's own key type
            algorithm=algorithm,
            headers={"kid": current.kid, "typ": token_type},
        )

    def verifying_key(self, kid: object, algorithm: str) -> VerifyingKey | None:
        """The key named `kid`, if it is one of ours for that algorithm (current or previous)."""
        key = self._by_kid.get(kid) if isinstance(kid, str) else None
        return key.public if key is not None and key.algorithm == algorithm else None

    def verify(self, token: str, algorithm: str, token_type: str) -> dict[str, Any] | None:
        """The claims of a token one of our keys of `algorithm` signed with this type in its
        header; None for anything else. Times, issuer and audience are the caller's to check."""
        try:
            header = jwt.get_unverified_header(token)
            key = self.verifying_key(header.get("kid"), algorithm)
            if key is None or header.get("typ") != token_type:
                return None
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
            return claims
        except jwt.PyJWTError:
            return None

    def jwks(self) -> dict[str, Any]:
        return self._jwks
