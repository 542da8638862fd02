"""A real `tessera serve`, a client registered with `tessera admin client create`, and panva's
openid-client (npm, on Node.js) as the machine client: discovery, client_credentials with
either way of authenticating, introspection, revocation. Then an API checks the token offline,
as the docs tell it to: PyJWT, the JWKS, RS256, its own audience."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jwt
import pytest

from tests.e2e.test_serve import run_tessera, serving
from tests.relying_party.harness import run_machine_client
from tests.servers import free_port

API = "https://orders.example/"


def test_openid_client_gets_introspects_and_revokes_a_machine_token(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving("sqlite", request, tmp_path, PORT=str(port), PUBLIC_URL=base) as (url, data):
        made = run_tessera(
            data,
            *("admin", "client", "create", "Orders worker"),
            *("--grant", "client_credentials", "--scope", "orders:read", "--resource", API),
        )
        issued = json.loads(made)

        got = run_machine_client(
            issuer=url,
            clientId=issued["client_id"],
            clientSecret=issued["client_secret"],
            resource=API,
            scope="orders:read",
        )
        assert got["metadata"]["issuer"] == url
        assert "client_credentials" in got["metadata"]["grant_types_supported"]
        tokens = got["tokens"]
        assert tokens["token_type"].lower() == "bearer" and tokens["scope"] == "orders:read"
        assert got["posted"]["access_token"] != tokens["access_token"]
        assert got["active"]["active"] is True
        assert got["active"]["client_id"] == issued["client_id"]
        assert got["active"]["aud"] == API
        assert got["revoked"] == {"active": False}
        # A 401 with a Basic challenge naming the error, as RFC 6749 (5.2) asks.
        refused = got["wrongSecret"]
        assert refused["status"] == 401 and refused["code"] == "OAUTH_WWW_AUTHENTICATE_CHALLENGE"
        [challenge] = refused["challenge"]
        assert challenge["scheme"] == "basic"
        assert challenge["parameters"]["error"] == "invalid_client"

        # The API: the JWKS fetched from the issuer, the key by kid, RS256, its own audience.
        keys = jwt.PyJWKClient(got["metadata"]["jwks_uri"])
        access = got["posted"]["access_token"]
        claims = jwt.decode(
            access,
            keys.get_signing_key_from_jwt(access),
            algorithms=["RS256"],
            audience=url,  # asked for no resource: the issuer's own audience
            issuer=url,
            options={"require": ["exp", "iat", "jti", "client_id", "scope"]},
        )
        assert claims["client_id"] == claims["sub"] == issued["client_id"]
        assert jwt.get_unverified_header(access)["typ"] == "at+jwt"
        # Never a session of tessera's own API.
        me = httpx.get(f"{url}/api/users/me", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 401
