"""MFA over HTTP: enrolment, the two-step login, and its refusals."""

from __future__ import annotations

from typing import Any

import pyotp
from litestar.testing import TestClient

from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock, event_count
from tests.http.test_api import bearer, log_in, register_and_verify

Client = TestClient[Any]


def test_enable_confirm_login_with_mfa_and_disable(
    client: Client, container: Container, clock: FakeClock
) -> None:
    register_and_verify(client, container)
    tokens = log_in(client)
    enabled = client.post("/api/users/me/mfa", headers=bearer(tokens), json={"action": "enable"})
    assert enabled.status_code == 200
    secret = enabled.json()["secret"]
    assert enabled.json()["otpauth_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(secret)
    confirmed = client.post(
        "/api/users/me/mfa",
        headers=bearer(tokens),
        json={"action": "confirm", "code": totp.at(clock.now().timestamp())},
    )
    assert confirmed.status_code == 200
    assert len(confirmed.json()["recovery_codes"]) == 10
    clock.advance(seconds=30)

    first = client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
    assert first.status_code == 200
    assert first.json()["mfa_required"] is True
    assert "access_token" not in first.json()
    mfa_token = first.json()["mfa_token"]
    assert (
        client.get("/api/users/me", headers={"Authorization": f"Bearer {mfa_token}"}).status_code
        == 401
    )

    wrong = client.post("/api/auth/login/mfa", json={"mfa_token": mfa_token, "code": "000000"})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_mfa_code")
    code = totp.at(clock.now().timestamp())
    done = client.post("/api/auth/login/mfa", json={"mfa_token": mfa_token, "code": code})
    assert done.status_code == 200
    assert "access_token" in done.json()
    replay = client.post("/api/auth/login/mfa", json={"mfa_token": mfa_token, "code": code})
    assert (replay.status_code, replay.json()["code"]) == (401, "invalid_mfa_code")

    recovery_codes = confirmed.json()["recovery_codes"]
    recovery = recovery_codes[0]
    one_step = client.post(
        "/api/auth/login", json={"login": "ada", "password": PASSWORD, "otp": recovery}
    )
    assert "access_token" in one_step.json()

    # New recovery codes, re-authenticated with the password and a recovery code: the old
    # ones stop working.
    renewed = client.post(
        "/api/users/me/mfa",
        headers=bearer(done.json()),
        json={"action": "recovery_codes", "password": PASSWORD, "code": recovery_codes[1]},
    )
    assert renewed.status_code == 200, renewed.text
    new_codes = renewed.json()["recovery_codes"]
    assert len(new_codes) == 10 and not set(new_codes) & set(recovery_codes)
    stale = client.post(
        "/api/auth/login", json={"login": "ada", "password": PASSWORD, "otp": recovery_codes[2]}
    )
    assert (stale.status_code, stale.json()["code"]) == (401, "invalid_mfa_code")

    # Off: both factors, the password alone is not enough.
    alone = client.post(
        "/api/users/me/mfa",
        headers=bearer(done.json()),
        json={"action": "disable", "password": PASSWORD},
    )
    assert (alone.status_code, alone.json()["code"]) == (401, "invalid_mfa_code")
    disable = client.post(
        "/api/users/me/mfa",
        headers=bearer(done.json()),
        json={"action": "disable", "password": PASSWORD, "code": new_codes[0]},
    )
    assert disable.status_code == 204
    assert (
        "access_token"
        in client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD}).json()
    )


def test_bad_mfa_requests_are_problems_that_change_nothing(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container)
    tokens = log_in(client)
    before = event_count(container)
    for body, status, code in [
        ({"action": "explode"}, 400, "validation_failed"),
        ({"action": "confirm"}, 400, "validation_failed"),
        ({"action": "confirm", "code": "123456"}, 409, "mfa_not_enabled"),
        ({"action": "disable", "password": PASSWORD}, 409, "mfa_not_enabled"),
        ({"action": "disable"}, 409, "mfa_not_enabled"),
        ({"action": "recovery_codes", "password": PASSWORD}, 409, "mfa_not_enabled"),
        ({"action": "enable", "code": "\x00\x01\x02\x03\x04\x05"}, 400, "validation_failed"),
    ]:
        answer = client.post("/api/users/me/mfa", headers=bearer(tokens), json=body)
        assert (answer.status_code, answer.json()["code"]) == (status, code), body
    for body in [
        {"mfa_token": "garbage", "code": "123456"},
        {"mfa_token": tokens["access_token"], "code": "123456"},
    ]:
        answer = client.post("/api/auth/login/mfa", json=body)
        assert (answer.status_code, answer.json()["code"]) == (401, "invalid_mfa_token")
    assert (
        client.post("/api/auth/login/mfa", json={"mfa_token": "x", "code": "1"}).status_code == 400
    )
    assert event_count(container) == before
