"""The OpenID Provider harness against the real oidc-provider: discovery, JWKS, a whole
authorization code flow with PKCE done by hand as a relying party would, and the provider's
outages and key rotation."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest

from tests.oidc.harness import OidcProvider, new_pkce, sign_in

CLIENT_ID = "tessera"
CLIENT_SECRET = "tessera-client-secret"
REDIRECT_URI = "http://127.0.0.1:8123/sign-in/test-idp/callback"
ACCOUNTS = {
    "alice-sub": {"email": "alice@example.com", "email_verified": True, "name": "Alice"},
    "bob-sub": {"email": "bob@example.com", "email_verified": False},
}


def new_provider() -> OidcProvider:
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [REDIRECT_URI],
    }
    return OidcProvider(clients=[client], accounts=ACCOUNTS)


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with new_provider() as running:
        yield running


def authorize_url(
    provider: OidcProvider, challenge: str, state: str, nonce: str, **extra: str
) -> str:
    query = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid email",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{provider.discovery()['authorization_endpoint']}?{urlencode(query)}"


def code_flow(
    provider: OidcProvider,
    account: str,
    http: httpx.Client | None = None,
    authorize: dict[str, str] | None = None,
    **sign_in_args: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """authorize, sign in, exchange the code: (token response, verified ID token claims)."""
    verifier, challenge = new_pkce()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    url = authorize_url(provider, challenge, state, nonce, **(authorize or {}))
    redirect = sign_in(url, account, http, **sign_in_args)

    assert redirect.startswith(REDIRECT_URI + "?")
    answer = {name: values[0] for name, values in parse_qs(urlsplit(redirect).query).items()}
    assert answer["state"] == state
    assert answer["iss"] == provider.issuer  # RFC 9207
    discovery = provider.discovery()
    tokens = httpx.post(
        discovery["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert tokens.status_code == 200, tokens.text
    id_token = tokens.json()["id_token"]
    claims = verify(id_token, discovery["jwks_uri"], provider.issuer)
    assert claims["nonce"] == nonce
    return tokens.json(), claims


def verify(id_token: str, jwks_uri: str, issuer: str) -> dict[str, Any]:
    keys = jwt.PyJWKSet.from_dict(httpx.get(jwks_uri).json())
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = next(key for key in keys.keys if key.key_id == kid)
    claims: dict[str, Any] = jwt.decode(
        id_token, key, algorithms=["RS256"], audience=CLIENT_ID, issuer=issuer
    )
    return claims


def test_discovery_names_the_endpoints_and_requires_s256(provider: OidcProvider) -> None:
    document = provider.discovery()

    assert document["issuer"] == provider.issuer
    assert document["authorization_endpoint"] == f"{provider.issuer}/auth"
    assert document["token_endpoint"] == f"{provider.issuer}/token"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert {"email", "email_verified", "sub"} <= set(document["claims_supported"])


def test_the_jwks_publishes_the_signing_key(provider: OidcProvider) -> None:
    keys = httpx.get(provider.discovery()["jwks_uri"]).json()["keys"]

    assert [key["kid"] for key in keys] == [provider.signing_keys[0]["kid"]]
    assert "d" not in keys[0]  # public halves only


def test_a_code_flow_with_pkce_yields_a_signed_id_token(provider: OidcProvider) -> None:
    tokens, claims = code_flow(provider, "alice-sub")

    assert claims["aud"] == CLIENT_ID
    assert claims["sub"] == "alice-sub"
    assert claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True
    assert "name" not in claims  # the profile scope was not asked for
    assert tokens["token_type"] == "Bearer"


def test_acr_and_amr_of_the_sign_in_reach_the_id_token_asking_for_them(
    provider: OidcProvider,
) -> None:
    # oidc-provider puts them in the ID token only when asked: with acr_values or, as here,
    # with the claims parameter.
    asked = json.dumps({"id_token": {"acr": None, "amr": None}})

    _, claims = code_flow(
        provider,
        "bob-sub",
        acr="urn:tessera:test:mfa",
        amr=["pwd", "otp"],
        authorize={"claims": asked},
    )

    assert claims["sub"] == "bob-sub"
    assert claims["email_verified"] is False
    assert claims["acr"] == "urn:tessera:test:mfa"
    assert claims["amr"] == ["pwd", "otp"]


def test_a_second_flow_in_the_same_browser_skips_login_and_consent(provider: OidcProvider) -> None:
    with httpx.Client() as browser:
        code_flow(provider, "alice-sub", browser)
        # The account given now is never asked for: the provider's session is alice's.
        _, claims = code_flow(provider, "bob-sub", browser)

    assert claims["sub"] == "alice-sub"


def test_the_code_is_refused_without_its_verifier(provider: OidcProvider) -> None:
    _, challenge = new_pkce()
    redirect = sign_in(authorize_url(provider, challenge, "s", "n"), "alice-sub")
    code = parse_qs(urlsplit(redirect).query)["code"][0]

    tokens = httpx.post(
        provider.discovery()["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": new_pkce()[0],
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )

    assert tokens.status_code == 400
    assert tokens.json()["error"] == "invalid_grant"


def test_an_authorization_request_without_pkce_is_refused(provider: OidcProvider) -> None:
    url = authorize_url(provider, "x", "s", "n").replace("code_challenge", "unused")

    redirect = sign_in(url, "alice-sub")

    assert parse_qs(urlsplit(redirect).query)["error"] == ["invalid_request"]


def test_cancelling_at_the_provider_sends_access_denied(provider: OidcProvider) -> None:
    _, challenge = new_pkce()

    redirect = sign_in(authorize_url(provider, challenge, "st", "n"), "alice-sub", approve=False)

    answer = parse_qs(urlsplit(redirect).query)
    assert answer["error"] == ["access_denied"]
    assert answer["state"] == ["st"]


def test_the_provider_goes_down_and_comes_back_on_its_issuer() -> None:
    with new_provider() as provider:
        issuer = provider.issuer
        with provider.down(), pytest.raises(httpx.ConnectError):
            httpx.get(f"{issuer}/.well-known/openid-configuration")
        assert provider.issuer == issuer
        code_flow(provider, "alice-sub")


def test_rotated_keys_sign_new_id_tokens_and_the_old_key_stays_published() -> None:
    with new_provider() as provider:
        old = provider.signing_keys[0]["kid"]
        new = provider.rotate_keys()["kid"]
        tokens, _ = code_flow(provider, "alice-sub")
        published = [
            key["kid"] for key in httpx.get(provider.discovery()["jwks_uri"]).json()["keys"]
        ]

        assert jwt.get_unverified_header(tokens["id_token"])["kid"] == new
        assert published == [new, old]
