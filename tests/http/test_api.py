"""The whole flow through the real ASGI app, on both stores."""

from __future__ import annotations

from typing import Any

import pyotp
from litestar.testing import TestClient

from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD, mailed_token
from tests.conftest import FakeClock, event_count

Client = TestClient[Any]


def register_and_verify(client: Client, container: Container, who: str = "ada") -> dict[str, Any]:
    response = client.post(
        "/api/auth/register",
        json={"email": f"{who}@example.com", "username": who, "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    token = mailed_token(container, f"{who}@example.com")
    verified = client.post("/api/auth/verify-email", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
    return dict(response.json())


def log_in(client: Client, login: str = "ada") -> dict[str, Any]:
    response = client.post("/api/auth/login", json={"login": login, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return dict(response.json())


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def enable_mfa(client: Client, tokens: dict[str, Any], clock: FakeClock) -> pyotp.TOTP:
    """MFA turned on through the API; the confirming code is spent, so the clock moves on to
    the next step's."""
    enabled = client.post("/api/users/me/mfa", headers=bearer(tokens), json={"action": "enable"})
    totp = pyotp.TOTP(enabled.json()["secret"])
    confirmed = client.post(
        "/api/users/me/mfa",
        headers=bearer(tokens),
        json={"action": "confirm", "code": totp.at(clock.now().timestamp())},
    )
    assert confirmed.status_code == 200, confirmed.text
    clock.advance(seconds=30)
    return totp


def test_register_verify_login_profile_refresh_logout(client: Client, container: Container) -> None:
    account = register_and_verify(client, container)
    assert set(account) >= {"id", "email", "username", "email_verified"}
    tokens = log_in(client)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == container.settings.access_token_ttl

    me = client.get("/api/users/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["id"] == account["id"]

    updated = client.put("/api/users/me", headers=bearer(tokens), json={"display_name": "Ada"})
    assert updated.status_code == 200
    assert updated.json()["display_name"] == "Ada"

    refreshed = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    new = refreshed.json()

    logout = client.post("/api/auth/logout", headers=bearer(new))
    assert logout.status_code == 204
    assert client.get("/api/users/me", headers=bearer(new)).status_code == 401
    again = client.post("/api/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert again.status_code == 401


def test_login_answers(client: Client, container: Container) -> None:
    client.post(
        "/api/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
    )
    unverified = client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
    assert (unverified.status_code, unverified.json()["code"]) == (403, "email_not_verified")
    wrong = client.post("/api/auth/login", json={"login": "ada", "password": "not the password"})
    unknown = client.post("/api/auth/login", json={"login": "bob", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "invalid_credentials"


def test_conflicts_are_409_with_a_code(client: Client, container: Container) -> None:
    register_and_verify(client, container)
    taken = client.post(
        "/api/auth/register",
        json={"email": "ADA@example.com", "username": "other", "password": PASSWORD},
    )
    assert (taken.status_code, taken.json()["code"]) == (409, "email_taken")
    taken = client.post(
        "/api/auth/register",
        json={"email": "other@example.com", "username": "Ada", "password": PASSWORD},
    )
    assert (taken.status_code, taken.json()["code"]) == (409, "username_taken")


def test_resend_answers_the_same_for_known_and_unknown_addresses(
    client: Client, container: Container
) -> None:
    client.post(
        "/api/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
    )
    known = client.post("/api/auth/verify-email/resend", json={"email": "ada@example.com"})
    unknown = client.post("/api/auth/verify-email/resend", json={"email": "bob@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()


def test_logout_all_sessions(client: Client, container: Container) -> None:
    register_and_verify(client, container)
    first, second = log_in(client), log_in(client)
    response = client.post("/api/auth/logout", headers=bearer(first), json={"all_sessions": True})
    assert response.status_code == 204
    assert client.get("/api/users/me", headers=bearer(second)).status_code == 401


def test_logout_with_another_accounts_refresh_token_is_refused(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container, "ada")
    register_and_verify(client, container, "bob")
    ada, bob = log_in(client, "ada"), log_in(client, "bob")
    before = event_count(container)
    response = client.post(
        "/api/auth/logout", headers=bearer(ada), json={"refresh_token": bob["refresh_token"]}
    )
    assert (response.status_code, response.json()["code"]) == (401, "invalid_refresh_token")
    assert event_count(container) == before
    assert client.get("/api/users/me", headers=bearer(bob)).status_code == 200


def test_jwks_publishes_the_key_that_verifies_access_tokens(
    client: Client, container: Container
) -> None:
    import jwt

    register_and_verify(client, container)
    tokens = log_in(client)
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    header = jwt.get_unverified_header(tokens["access_token"])
    (key,) = [k for k in keys if k["kid"] == header["kid"]]
    assert (key["kty"], key["crv"], key["alg"]) == ("OKP", "Ed25519", "EdDSA")
    claims = jwt.decode(
        tokens["access_token"],
        jwt.PyJWK(key).key,
        algorithms=["EdDSA"],
        audience=container.settings.jwt_audience,
        issuer=container.settings.issuer,
        options={"verify_iat": False, "verify_exp": False},
    )
    assert set(claims) >= {"iss", "aud", "sub", "sid", "jti", "iat", "exp", "roles"}


def test_openapi_health_and_metrics(client: Client, container: Container) -> None:
    schema = client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.1")
    assert "/api/auth/register" in schema.json()["paths"]
    assert client.get("/schema").status_code == 200
    assert client.get("/health/live").json() == {"status": "ok"}
    assert client.get("/health/ready").status_code == 200

    client.post("/api/auth/login", json={"login": "nobody", "password": "whatever1"})
    metrics = client.get("/metrics").text
    assert 'tessera_logins_total{outcome="invalid_credentials"}' in metrics
    assert (
        'tessera_requests_total{app_name="tessera",method="POST",path="/api/auth/login",status_code="401"}'
        in metrics
    )
