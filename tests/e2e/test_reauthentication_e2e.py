"""Black box, through a real `tessera serve` on both deployments (the embedded default, and
PostgreSQL), with a real OpenID Provider: a stolen access token alone neither adds a passkey nor
links an identity, and wrong guesses behind a token meet the lock and then the limit, recorded
as failed logins that name the command."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.authenticator import Authenticator, b64url
from tests.e2e.test_serve import PASSWORD, serving, wait_for_mail
from tests.oidc.harness import OidcProvider

PUBLIC_URL = "https://auth.example.test"
APP = "https://app.example.test/linked"  # a client's redirect URI, on the allow-list


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    client = {
        "client_id": "tessera",
        "client_secret": "idp-client-secret",
        "redirect_uris": [f"{PUBLIC_URL}/api/auth/oidc/idp/callback"],
    }
    with OidcProvider(clients=[client], accounts={}) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path, idp: OidcProvider
) -> Iterator[tuple[str, Path]]:
    # The test is the reverse proxy: it names the client address in X-Forwarded-For.
    with serving(
        request.param,
        request,
        tmp_path,
        PUBLIC_URL=PUBLIC_URL,
        OIDC_PROVIDERS="idp",
        OIDC_REDIRECT_URIS=APP,
        OIDC_IDP_ISSUER=idp.issuer,
        OIDC_IDP_CLIENT_ID="tessera",
        OIDC_IDP_CLIENT_SECRET="idp-client-secret",
    ) as served:
        yield served


def signed_up(http: httpx.Client, data_dir: Path, who: str) -> dict[str, str]:
    """Registered, verified from the mailed link, signed in: the Bearer header."""
    email = f"{who}@example.com"
    registered = http.post(
        "/api/auth/register", json={"email": email, "username": who, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.text
    token = re.search(
        r"verify-email\?token=([A-Za-z0-9_-]+)", wait_for_mail(data_dir / "mail", email)
    )
    assert token
    assert http.post("/api/auth/verify-email", json={"token": token.group(1)}).status_code == 200
    tokens = http.post("/api/auth/login", json={"login": who, "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def problem(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json().get("code")


def test_a_stolen_access_token_adds_no_passkey_and_links_no_identity(
    server: tuple[str, Path], idp: OidcProvider
) -> None:
    base, data_dir = server
    with httpx.Client(base_url=base, timeout=10) as http:
        stolen = signed_up(http, data_dir, "ada")

        # No registration challenge without the password; a made-up one registers nothing.
        refused = http.post("/api/users/me/passkeys/options", headers=stolen, json={})
        assert problem(refused) == (401, "reauthentication_required")
        made_up = {
            "challenge": b64url(os.urandom(32)),
            "rp": {"id": "auth.example.test", "name": "Tessera"},
            "user": {"id": b64url(os.urandom(16)), "name": "ada", "displayName": "ada"},
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        }
        forged = Authenticator(PUBLIC_URL).create(made_up)
        registered = http.post(
            "/api/users/me/passkeys", headers=stolen, json={"credential": forged}
        )
        assert problem(registered) == (400, "invalid_passkey_registration")
        assert http.get("/api/users/me/passkeys", headers=stolen).json() == []

        # No link either: no state is started, no flow cookie is set, and the old query-string
        # way is gone.
        link = http.post("/api/auth/oidc/idp/link", headers=stolen, json={"redirect_uri": APP})
        assert problem(link) == (401, "reauthentication_required")
        assert "tessera-oidc" not in link.headers.get("set-cookie", "")
        old_way = http.get(
            "/api/auth/oidc/idp/start",
            params={"redirect_uri": APP, "link": "true"},
            headers=stolen,
        )
        assert old_way.status_code == 400

        # The person, with the password, does both.
        proven = {"password": PASSWORD}
        options = http.post("/api/users/me/passkeys/options", headers=stolen, json=proven)
        assert options.status_code == 200, options.text
        device = Authenticator(PUBLIC_URL)
        added = http.post(
            "/api/users/me/passkeys",
            headers=stolen,
            json={"credential": device.create(options.json())},
        )
        assert added.status_code == 201, added.text
        linked = http.post(
            "/api/auth/oidc/idp/link", headers=stolen, json={"redirect_uri": APP, **proven}
        )
        assert linked.status_code == 200, linked.text
        assert linked.json()["authorization_url"].startswith(idp.issuer)
        assert "tessera-oidc" in linked.headers["set-cookie"]


def test_guesses_behind_a_token_meet_the_lock_and_the_limit(server: tuple[str, Path]) -> None:
    """25 wrong passwords behind one token, each from another address and spread over every
    re-authenticated command: the lock after five, then 429 once the account's allowance is
    spent; each guess a LoginFailed naming its command; the right password refused while
    locked, here and at the sign-in."""
    base, data_dir = server
    with httpx.Client(base_url=base, timeout=10) as http:
        bearer = signed_up(http, data_dir, "bob")
        guesses = [
            ("POST", "/api/users/me/passkeys/options", {"password": "guess"}),
            ("POST", "/api/auth/oidc/idp/link", {"password": "guess", "redirect_uri": APP}),
            ("DELETE", "/api/users/me", {"password": "guess"}),
            (
                "PUT",
                "/api/users/me/password",
                {"current_password": "guess", "new_password": "x" * 12},
            ),
        ]
        answers = []
        for n in range(25):
            method, path, body = guesses[n % len(guesses)]
            address = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
            answers.append(http.request(method, path, headers={**bearer, **address}, json=body))
        codes = [problem(a) for a in answers]
        assert codes[:5] == [(403, "invalid_current_password")] * 5, codes
        assert codes[5] == (423, "account_locked"), codes
        assert (429, "rate_limited") in codes and codes[-1] == (429, "rate_limited"), codes
        assert set(codes[5:]) == {(423, "account_locked"), (429, "rate_limited")}, codes
        assert all(int(a.headers["retry-after"]) > 0 for a in answers[5:])

        activity = http.get("/api/users/me/activity", headers=bearer).json()["entries"]
        failed = [e["details"] for e in activity if e["type"] == "LoginFailed"]
        assert sorted(d["command"] for d in failed) == sorted(
            ["add_passkey", "link_identity", "erase", "change_password", "add_passkey"]
        )
        assert all(d["factor"] == "password" for d in failed)
        assert [e["type"] for e in activity].count("AccountLocked") == 1

        time.sleep(6.5)  # one guess more in the account's allowance (10 a minute)
        right = http.request("DELETE", "/api/users/me", headers=bearer, json={"password": PASSWORD})
        assert problem(right) == (423, "account_locked")
        login = http.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
        assert problem(login) == (423, "account_locked")
        assert http.get("/api/users/me", headers=bearer).json()["username"] == "bob"
