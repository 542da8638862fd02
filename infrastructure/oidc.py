"""The client side of OpenID Connect (discovery, the code flow with PKCE, the ID token) and of
GitHub's plain OAuth 2.0 with its user API: Authlib builds the requests, joserfc verifies the
ID token, httpx carries them, each with a short timeout so a provider that is down answers fast.

Nothing here decides who signs in; the application does (application/factors/external_sign_in.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.common.urls import url_decode
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, KeySet

from application.ports import ProviderDown, ProviderIdentity, ProviderRefused

log = logging.getLogger(__name__)

OIDC = "oidc"
GITHUB = "github"
# Never accepted, whatever discovery says: "none" is no signature, and HMAC would make the
# client secret a signing key.
_REFUSED_ALGORITHMS = {"none", "HS256", "HS384", "HS512"}
_SUPPORTED_ALGORITHMS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                         "ES512", "EdDSA"}  # fmt: skip
_LEEWAY = 60  # seconds of clock skew allowed on exp, iat, nbf
_DISCOVERY_TTL = 3600.0
_JWKS_REFETCH_AFTER = 10.0  # an unknown kid refetches the JWKS, but not more often than this


@dataclass(frozen=True)
class ProviderConfig:
    name: str  # as in OIDC_PROVIDERS: the path segment and the trail's `provider`
    kind: str  # OIDC or GITHUB
    label: str
    client_id: str
    client_secret: str
    scopes: str
    issuer: str = ""  # OIDC: discovery at issuer + /.well-known/openid-configuration
    api_url: str = "https://api.github.com"  # GITHUB
    authorize_url: str = "https://github.com/login/oauth/authorize"  # GITHUB
    token_url: str = "https://github.com/login/oauth/access_token"  # noqa: S105  (GITHUB)
    trust_mfa: bool = False


@dataclass
class _Discovered:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: frozenset[str]
    fetched_at: float
    keys: KeySet | None = None
    keys_fetched_at: float = 0.0


class OidcClients:
    """Every configured provider; discovery documents and JWKS cached per provider."""

    def __init__(self, providers: Sequence[ProviderConfig], timeout: float = 5.0) -> None:
        self._providers = {p.name: p for p in providers}
        self._timeout = timeout
        self._discovered: dict[str, _Discovered] = {}
        self._lock = threading.Lock()

    def names(self) -> Sequence[str]:
        return list(self._providers)

    def label(self, provider: str) -> str:
        return self._providers[provider].label

    def trusts_mfa(self, provider: str) -> bool:
        return self._providers[provider].trust_mfa

    def authorization_url(
        self, provider: str, callback: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        config = self._providers[provider]
        extra: dict[str, str] = {
            "code_challenge": create_s256_code_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        if config.kind == OIDC:
            endpoint = self._discover(config).authorization_endpoint
            extra["nonce"] = nonce
            if config.trust_mfa:
                # Many providers put amr/acr in the ID token only when asked (OIDC Core 5.5):
                # without them, the trust could never apply. Voluntary: ignored where unknown.
                extra["claims"] = '{"id_token":{"amr":null,"acr":null}}'
        else:
            endpoint = config.authorize_url
        uri: str = prepare_grant_uri(
            endpoint,
            client_id=config.client_id,
            response_type="code",
            redirect_uri=callback,
            scope=config.scopes,
            state=state,
            **extra,
        )
        return uri

    def identify(
        self, provider: str, code: str, callback: str, nonce: str, code_verifier: str
    ) -> ProviderIdentity:
        config = self._providers[provider]
        if config.kind == GITHUB:
            token = self._redeem(config, config.token_url, code, callback, code_verifier)
            return self._github_identity(config, token)
        discovered = self._discover(config)
        token = self._redeem(config, discovered.token_endpoint, code, callback, code_verifier)
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderRefused("no ID token")
        claims = self._verified_claims(config, discovered, id_token, nonce)
        amr = claims.get("amr")
        return ProviderIdentity(
            subject=str(claims["sub"]),
            email=_text(claims.get("email")),
            email_verified=claims.get("email_verified") is True,
            hints=(
                _text(claims.get("preferred_username")),
                _text(claims.get("email")),
                _text(claims.get("name")),
            ),
            amr=tuple(str(m) for m in amr) if isinstance(amr, list) else (),
            acr=_text(claims.get("acr")),
        )

    # The ID token (OIDC Core 3.1.3.7)

    def _verified_claims(
        self, config: ProviderConfig, discovered: _Discovered, id_token: str, nonce: str
    ) -> dict[str, Any]:
        def key_for(guest: GuestProtocol) -> Any:
            return self._key(config, discovered, guest.headers().get("kid"))

        try:
            token = jwt.decode(id_token, key_for, algorithms=sorted(discovered.algorithms))
        except (JoseError, ValueError, KeyError) as error:
            raise ProviderRefused(f"ID token: {error}") from None
        claims = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            leeway=_LEEWAY,
            iss={"essential": True, "value": _expected_issuer(discovered.issuer, claims)},
            sub={"essential": True},
            aud={"essential": True, "value": config.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise ProviderRefused(f"ID token: {error}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != config.client_id:
            raise ProviderRefused("ID token: several audiences and another azp")
        if not isinstance(claims.get("iat"), int | float) or claims["iat"] > time.time() + _LEEWAY:
            raise ProviderRefused("ID token: issued in the future")
        return claims

    def _key(self, config: ProviderConfig, discovered: _Discovered, kid: str | None) -> Any:
        """The JWKS key named by `kid`; a kid not seen yet refetches the set once (the
        provider rotated its keys), not more often than every few seconds."""
        with self._lock:
            keys = discovered.keys
            stale = time.monotonic() - discovered.keys_fetched_at > _JWKS_REFETCH_AFTER
        if keys is None or (stale and not _has_kid(keys, kid)):
            keys = KeySet.import_key_set(self._get_json(discovered.jwks_uri))  # type: ignore[arg-type]
            with self._lock:
                discovered.keys, discovered.keys_fetched_at = keys, time.monotonic()
        if kid is None:
            if len(keys.keys) != 1:
                raise ProviderRefused("ID token without kid, and several keys")
            return keys.keys[0]
        if not _has_kid(keys, kid):
            raise ProviderRefused("ID token signed with an unknown key")
        return keys.get_by_kid(kid)

    # Discovery (OpenID Connect Discovery 1.0, 4)

    def _discover(self, config: ProviderConfig) -> _Discovered:
        with self._lock:
            known = self._discovered.get(config.name)
        if known is not None and time.monotonic() - known.fetched_at < _DISCOVERY_TTL:
            return known
        issuer = config.issuer.rstrip("/")
        document = self._get_json(f"{issuer}/.well-known/openid-configuration")
        announced = str(document.get("issuer", "")).rstrip("/")
        if announced != issuer and not _is_tenant_template(announced, issuer):
            raise ProviderDown(f"discovery names another issuer: {announced!r}")
        algorithms = (
            frozenset(
                str(a) for a in document.get("id_token_signing_alg_values_supported", ["RS256"])
            )
            & _SUPPORTED_ALGORITHMS - _REFUSED_ALGORITHMS
        )
        try:
            discovered = _Discovered(
                issuer=str(document["issuer"]),
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                jwks_uri=str(document["jwks_uri"]),
                algorithms=algorithms,
                fetched_at=time.monotonic(),
            )
        except KeyError as error:
            raise ProviderDown(f"discovery lacks {error}") from None
        if not algorithms:
            raise ProviderDown("discovery announces no signing algorithm tessera accepts")
        if known is not None and known.jwks_uri == discovered.jwks_uri:
            discovered.keys, discovered.keys_fetched_at = known.keys, known.keys_fetched_at
        with self._lock:
            self._discovered[config.name] = discovered
        return discovered

    # HTTP

    def _redeem(
        self, config: ProviderConfig, endpoint: str, code: str, callback: str, verifier: str
    ) -> dict[str, Any]:
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=callback, code_verifier=verifier
        )
        try:
            response = httpx.post(
                endpoint,
                content=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                },
                auth=(config.client_id, config.client_secret),
                timeout=self._timeout,
            )
        except httpx.HTTPError as error:
            raise ProviderDown(f"token endpoint: {error}") from None
        if response.status_code >= 500:
            raise ProviderDown(f"token endpoint answered {response.status_code}")
        token = _json_or_form(response)
        if response.status_code != 200 or "error" in token or "access_token" not in token:
            raise ProviderRefused(f"token endpoint: {token.get('error', response.status_code)}")
        return token

    def _get_json(self, url: str, token: str | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = httpx.get(url, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as error:
            raise ProviderDown(f"{url}: {error}") from None
        if response.status_code >= 500:
            raise ProviderDown(f"{url} answered {response.status_code}")
        if response.status_code != 200:
            raise ProviderRefused(f"{url} answered {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise ProviderDown(f"{url} answered no JSON") from None
        if not isinstance(document, dict):
            raise ProviderDown(f"{url} answered no JSON object")
        return document

    # GitHub: OAuth 2.0 and its REST API (no ID token)

    def _github_identity(self, config: ProviderConfig, token: dict[str, Any]) -> ProviderIdentity:
        access = str(token["access_token"])
        api = config.api_url.rstrip("/")
        user = self._get_json(f"{api}/user", access)
        emails: list[Any] = []
        try:
            response = httpx.get(
                f"{api}/user/emails",
                headers={"Accept": "application/json", "Authorization": f"Bearer {access}"},
                timeout=self._timeout,
            )
            if response.status_code == 200 and isinstance(response.json(), list):
                emails = response.json()
        except (httpx.HTTPError, ValueError):
            raise ProviderDown("GitHub's user API did not answer") from None
        primary = next(
            (e for e in emails if isinstance(e, dict) and e.get("primary") and e.get("verified")),
            None,
        )
        if "id" not in user:
            raise ProviderRefused("GitHub's user API named no user")
        return ProviderIdentity(
            subject=str(user["id"]),
            email=_text(primary["email"]) if primary else _text(user.get("email")),
            email_verified=primary is not None,
            hints=(_text(user.get("login")), _text(user.get("name"))),
            amr=(),
            acr=None,
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _has_kid(keys: KeySet, kid: str | None) -> bool:
    return kid is None or any(key.kid == kid for key in keys.keys)


def _is_tenant_template(announced: str, configured: str) -> bool:
    """Microsoft's multi-tenant endpoints announce "…/{tenantid}/v2.0" as their issuer."""
    return "{tenantid}" in announced and configured.rsplit("/", 2)[0] in announced


def _expected_issuer(issuer: str, claims: dict[str, Any]) -> str:
    """The issuer an ID token must name: the discovered one, with the token's own tenant for
    Microsoft's multi-tenant template (the token's `tid`)."""
    if "{tenantid}" in issuer:
        return issuer.replace("{tenantid}", str(claims.get("tid", "")))
    return issuer


def _json_or_form(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
        return document if isinstance(document, dict) else {}
    except ValueError:
        return dict(url_decode(response.text))
