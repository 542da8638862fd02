"""Bad input on every endpoint: a 4xx problem with a code, and no event recorded."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.testing import TestClient

from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD
from tests.conftest import event_count
from tests.http.test_api import bearer, log_in, register_and_verify

Client = TestClient[Any]

ENDPOINTS = {
    "/api/auth/register": {
        "email": "x@example.com",
        "username": "xavier",
        "password": "a long password",
    },
    "/api/auth/verify-email": {"token": "A" * 64},
    "/api/auth/verify-email/resend": {"email": "x@example.com"},
    "/api/auth/login": {"login": "xavier", "password": "a long password"},
    "/api/auth/refresh": {"refresh_token": "A" * 64},
    "/api/auth/forgot-password": {"email": "x@example.com"},
    "/api/auth/login/mfa": {"mfa_token": "a.b.c", "code": "123456"},
    "/api/auth/reset-password": {"token": "A" * 64, "new_password": "a long password"},
}
CONTROL = "bad\x00value"


def bad_bodies(valid: dict[str, Any]) -> list[tuple[str, bytes, str]]:
    """(name, body, content type) for each kind of bad input."""
    field = next(iter(valid))
    cases: list[tuple[str, bytes, str]] = [
        ("malformed json", b'{"email": ', "application/json"),
        ("not an object", b"[1, 2, 3]", "application/json"),
        ("bad utf-8", b'{"' + field.encode() + b'": "\xff\xfe"}', "application/json"),
        ("wrong type", json.dumps({**valid, field: 12345}).encode(), "application/json"),
        ("unknown field", json.dumps({**valid, "is_admin": True}).encode(), "application/json"),
        (
            "missing field",
            json.dumps({k: v for k, v in valid.items() if k != field}).encode(),
            "application/json",
        ),
        ("overlong field", json.dumps({**valid, field: "a" * 5000}).encode(), "application/json"),
        ("control characters", json.dumps({**valid, field: CONTROL}).encode(), "application/json"),
        (
            "oversized body",
            json.dumps({**valid, "padding": "x" * 70_000}).encode(),
            "application/json",
        ),
        ("wrong content type", json.dumps(valid).encode(), "text/plain"),
        ("form encoded", b"email=x%40example.com", "application/x-www-form-urlencoded"),
    ]
    return cases


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_bad_input_is_a_4xx_problem_and_changes_nothing(
    client: Client, container: Container, path: str
) -> None:
    """Every kind of bad body, one after another on one app (a fresh app per body cost the
    suite a minute and a half, all of it in setting up)."""
    for name, body, content_type in bad_bodies(ENDPOINTS[path]):
        before = event_count(container)
        response = client.post(path, content=body, headers={"Content-Type": content_type})
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), name
        problem = response.json()
        assert {"type", "title", "status", "detail", "code"} <= set(problem), name
        assert problem["status"] == response.status_code, name
        expected = {"oversized body": 413, "wrong content type": 415, "form encoded": 415}.get(name)
        if expected:
            assert response.status_code == expected, name
        if name in ("wrong type", "unknown field", "overlong field", "control characters"):
            assert problem["code"] == "validation_failed", name
            assert problem["errors"], f"{name}: validation errors must name the offending fields"
        assert event_count(container) == before, name


def test_validation_errors_name_the_field(client: Client) -> None:
    response = client.post(
        "/api/auth/register", json={"email": "x@example.com", "username": "xavier", "password": 7}
    )
    assert [e["field"] for e in response.json()["errors"]] == ["password"]
    short = client.post(
        "/api/auth/register",
        json={"email": "x@example.com", "username": "xavier", "password": "short"},
    )
    assert short.status_code == 400
    assert short.json()["errors"][0] == {
        "field": "password",
        "rule": "min_length",
        "message": "must be at least 8 characters",
    }


def test_unknown_routes_and_methods_are_problems(client: Client) -> None:
    missing = client.get("/api/nothing-here")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    wrong_method = client.get("/api/auth/login")
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "method_not_allowed")


def forge(container: Container, claims: dict[str, Any], key: Any = None, **headers: Any) -> str:
    return jwt.encode(
        claims, key or Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=headers
    )


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def hs256_with_public_key(container: Container, claims: dict[str, Any], kid: str) -> str:
    """The algorithm-confusion attack, made by hand: PyJWT itself refuses to make it."""
    (ours,) = [key for key in container.claim_signer.jwks()["keys"] if key["kid"] == kid]
    public_pem = jwt.PyJWK(ours).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': kid})}.{b64(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_access_token_attacks_are_all_401(client: Client, container: Container) -> None:
    register_and_verify(client, container)
    tokens = log_in(client)
    good = tokens["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    header = jwt.get_unverified_header(good)
    head, body, signature = good.split(".")
    tampered_claims = b64({**claims, "sub": "00000000-0000-0000-0000-000000000000"})
    now = datetime.now(UTC)
    attacks = {
        "none": f"{b64({'alg': 'none', 'typ': 'at+jwt', 'kid': header['kid']})}.{body}.",
        "tampered payload": f"{head}.{tampered_claims}.{signature}",
        "tampered signature": f"{head}.{body}.{signature[:-4]}AAAA",
        "other key, same kid": forge(container, claims, kid=header["kid"], typ="at+jwt"),
        "hs256 with public key": hs256_with_public_key(container, claims, header["kid"]),
        "unknown kid": forge(container, claims, kid="nope", typ="at+jwt"),
        "garbage": "not.a.jwt",
        "refresh token as access token": tokens["refresh_token"],
        "expired": forge(container, {**claims, "exp": int((now - timedelta(hours=1)).timestamp())}),
        "empty": "",
    }
    # Expired but correctly signed: re-sign with our own key to isolate the expiry check.
    expired_claims = {**claims, "iat": claims["iat"] - 7200, "exp": int(claims["iat"]) - 3600}
    attacks["expired, our key"] = container.claim_signer.sign(expired_claims, "EdDSA", "at+jwt")
    wrong_aud = {**claims, "aud": "someone-else"}
    attacks["wrong audience"] = container.claim_signer.sign(wrong_aud, "EdDSA", "at+jwt")
    wrong_iss = {**claims, "iss": "https://evil.example"}
    attacks["wrong issuer"] = container.claim_signer.sign(wrong_iss, "EdDSA", "at+jwt")
    before = event_count(container)
    for name, token in attacks.items():
        response = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.json()["code"] == "invalid_access_token", name
        assert response.headers["www-authenticate"].startswith("Bearer"), name
    assert client.get("/api/users/me").status_code == 401
    assert (
        client.get("/api/users/me", headers={"Authorization": f"Basic {good}"}).status_code == 401
    )
    assert client.get("/api/users/me", headers=bearer(tokens)).status_code == 200
    assert event_count(container) == before


def test_bad_input_on_authenticated_endpoints_changes_nothing(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container)
    tokens = log_in(client)
    before = event_count(container)
    for body in [
        {"display_name": CONTROL},
        # Python's `$` matches before a final newline; the schema's (ECMA's) does not.
        {"display_name": "\n"},
        {"display_name": "Ada\n"},
        {"display_name": "x" * 101},
        {"display_name": 1},
        {"nick": "x"},
    ]:
        response = client.put("/api/users/me", headers=bearer(tokens), json=body)
        assert (response.status_code, response.json()["code"]) == (400, "validation_failed"), body
    for body in [
        {"current_password": PASSWORD},
        {"current_password": PASSWORD, "new_password": 5},
        {"current_password": PASSWORD, "new_password": CONTROL},
        {"current_password": PASSWORD, "new_password": "a new passphrase\n"},
        {"current_password": PASSWORD, "new_password": "short"},
        {"current_password": PASSWORD, "new_password": "x" * 2000},
        {"current_password": PASSWORD, "new_password": "a new passphrase", "extra": 1},
    ]:
        response = client.put("/api/users/me/password", headers=bearer(tokens), json=body)
        assert (response.status_code, response.json()["code"]) == (400, "validation_failed"), body
    for body in [{"all_sessions": "yes"}, {"refresh_token": "!!"}, {"other": 1}]:
        response = client.post("/api/auth/logout", headers=bearer(tokens), json=body)
        assert response.status_code == 400, body
    assert event_count(container) == before
    assert client.get("/api/users/me", headers=bearer(tokens)).status_code == 200


def test_each_token_is_refused_where_another_kind_is_expected(
    client: Client, container: Container
) -> None:
    """Access, refresh, MFA, verification and reset tokens are each good for one thing only,
    and a token not yet valid is refused like an expired one; none is recorded as a success."""
    from tests.application.test_account_security import reset_link, token_of

    register_and_verify(client, container)
    tokens = log_in(client)
    client.post("/api/auth/forgot-password", json={"email": "ada@example.com"})
    reset = token_of(reset_link(container, "ada@example.com"))
    mfa_token = container.signer.issue_mfa_token(
        UUID(jwt.decode(tokens["access_token"], options={"verify_signature": False})["sub"]),
        container.clock.now(),
    )
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    future = {**claims, "iat": claims["iat"] + 3600, "exp": claims["exp"] + 3600}
    not_yet_valid = container.claim_signer.sign(future, "EdDSA", "at+jwt")
    before = event_count(container)
    for name, token in {"mfa token": mfa_token, "not yet valid": not_yet_valid}.items():
        refused = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401, name
    for name, body in {
        "access token as refresh token": {"refresh_token": tokens["access_token"]},
        "reset token as refresh token": {"refresh_token": reset},
    }.items():
        refused = client.post("/api/auth/refresh", json=body)
        assert 400 <= refused.status_code < 500, name
        assert refused.headers["content-type"].startswith("application/problem+json"), name
    assert client.post("/api/auth/verify-email", json={"token": reset}).status_code == 400
    access_as_mfa = client.post(
        "/api/auth/login/mfa", json={"mfa_token": tokens["access_token"], "code": "123456"}
    )
    assert access_as_mfa.status_code == 401
    refresh_as_reset = client.post(
        "/api/auth/reset-password",
        json={"token": tokens["refresh_token"], "new_password": "a brand new passphrase"},
    )
    assert refresh_as_reset.status_code == 400
    assert event_count(container) == before
    # The reset token itself still works for what it is for.
    done = client.post(
        "/api/auth/reset-password", json={"token": reset, "new_password": "a brand new passphrase"}
    )
    assert done.status_code == 204


def test_keys_and_key_urls_named_in_the_token_header_are_ignored(
    client: Client, container: Container
) -> None:
    """RFC 7515 jwk/jku/x5u headers let a token bring its own key: only our own key verifies
    (OWASP ASVS 5.0 9.1.3)."""
    register_and_verify(client, container)
    good = log_in(client)["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    kid = jwt.get_unverified_header(good)["kid"]
    attacker = Ed25519PrivateKey.generate()
    public_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key()))
    for extra in (
        {"jwk": public_jwk},
        {"jku": "https://evil.example/jwks.json"},
        {"x5u": "https://evil.example/cert.pem"},
    ):
        token = forge(container, claims, key=attacker, kid=kid, typ="at+jwt", **extra)
        answer = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
        assert (answer.status_code, answer.json()["code"]) == (401, "invalid_access_token"), extra
    assert (
        client.get("/api/users/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    )


def test_bodies_are_their_schema_s_types_exactly(client: Client, container: Container) -> None:
    """Found by the fuzzer: `{"all_sessions": 1}` was taken as true and ended every session.
    The schema says boolean; a number or a string "true" is refused, and changes nothing."""
    register_and_verify(client, container)
    first, second = log_in(client), log_in(client)
    before = event_count(container)
    for lax in (1, "true", "1", 0):
        answer = client.post("/api/auth/logout", headers=bearer(first), json={"all_sessions": lax})
        assert (answer.status_code, answer.json()["code"]) == (400, "validation_failed"), lax
        assert answer.json()["errors"][0]["field"] == "all_sessions"
    assert event_count(container) == before
    assert client.get("/api/users/me", headers=bearer(second)).status_code == 200
    assert (
        client.post(
            "/api/auth/logout", headers=bearer(first), json={"all_sessions": True}
        ).status_code
        == 204
    )
    assert client.get("/api/users/me", headers=bearer(second)).status_code == 401


@pytest.mark.parametrize(
    ("algorithm", "extra"),
    [
        ("EdDSA", {"client_id": "grafana"}),  # an access token issued to another app (RFC 9068)
        ("EdDSA", {"client_id": None}),  # the claim's presence is enough, whatever its value
        ("RS256", {}),  # first-party tokens stay EdDSA: our own RSA key signs none of them
        ("ES256", {}),
    ],
)
def test_a_token_we_signed_for_another_app_is_no_first_party_session(
    client: Client, container: Container, algorithm: str, extra: dict[str, Any]
) -> None:
    """Tokens signed by tessera's own keys, for tessera's own audience, with the first-party
    type: even so, one that names a client, or signed with any algorithm but EdDSA, is a 401."""
    register_and_verify(client, container)
    tokens = log_in(client)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    token = container.claim_signer.sign({**claims, **extra}, algorithm, "at+jwt")
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    before = event_count(container)
    refused = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_access_token")
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert event_count(container) == before
    # The same claims, EdDSA, without client_id: the one thing that made it a 401 above.
    first_party = {k: v for k, v in claims.items() if k != "client_id"}
    again = container.claim_signer.sign(first_party, "EdDSA", "at+jwt")
    assert client.get("/api/users/me", headers={"Authorization": f"Bearer {again}"}).is_success
