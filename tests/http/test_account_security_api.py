"""Account security over HTTP: lockout answers, forgot/reset, change password."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from interfaces.container import Container
from tests.application.test_account_security import NEW, reset_link, token_of
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock, event_count
from tests.http.test_api import bearer, log_in, register_and_verify

Client = TestClient[Any]


def test_a_locked_account_answers_423_with_retry_after(
    client: Client, container: Container, clock: FakeClock
) -> None:
    register_and_verify(client, container)
    for _ in range(5):
        wrong = client.post("/api/auth/login", json={"login": "ada", "password": "wrong password!"})
        assert wrong.json()["code"] == "invalid_credentials"
    locked = client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
    assert (locked.status_code, locked.json()["code"]) == (423, "account_locked")
    assert 840 < int(locked.headers["retry-after"]) <= 900
    clock.advance(minutes=15)
    log_in(client)


def test_forgot_password_answers_the_same_for_known_and_unknown(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container)
    known = client.post("/api/auth/forgot-password", json={"email": "ada@example.com"})
    unknown = client.post("/api/auth/forgot-password", json={"email": "bob@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert known.headers.keys() == unknown.headers.keys()


def test_reset_flow_over_http(client: Client, container: Container) -> None:
    register_and_verify(client, container)
    old = log_in(client)
    client.post("/api/auth/forgot-password", json={"email": "ada@example.com"})
    token = token_of(reset_link(container, "ada@example.com"))
    weak = client.post(
        "/api/auth/reset-password", json={"token": token, "new_password": "password1"}
    )
    assert weak.status_code == 400
    assert weak.json()["errors"][0]["field"] == "new_password"
    assert weak.json()["errors"][0]["rule"] == "common"
    done = client.post("/api/auth/reset-password", json={"token": token, "new_password": NEW})
    assert done.status_code == 204
    again = client.post(
        "/api/auth/reset-password", json={"token": token, "new_password": NEW + "!"}
    )
    assert (again.status_code, again.json()["code"]) == (400, "invalid_token")
    assert client.get("/api/users/me", headers=bearer(old)).status_code == 401
    assert client.post("/api/auth/login", json={"login": "ada", "password": NEW}).status_code == 200


def test_change_password_over_http(client: Client, container: Container) -> None:
    register_and_verify(client, container)
    here, there = log_in(client), log_in(client)
    before = event_count(container)
    wrong = client.put(
        "/api/users/me/password",
        headers=bearer(here),
        json={"current_password": "not it at all", "new_password": NEW},
    )
    assert (wrong.status_code, wrong.json()["code"]) == (403, "invalid_current_password")
    reused = client.put(
        "/api/users/me/password",
        headers=bearer(here),
        json={"current_password": PASSWORD, "new_password": PASSWORD},
    )
    assert reused.json()["errors"][0]["rule"] == "reused"
    assert event_count(container) == before + 1  # the wrong guess, counted; nothing else
    changed = client.put(
        "/api/users/me/password",
        headers=bearer(here),
        json={"current_password": PASSWORD, "new_password": NEW},
    )
    assert changed.status_code == 204
    assert client.get("/api/users/me", headers=bearer(here)).status_code == 200
    assert client.get("/api/users/me", headers=bearer(there)).status_code == 401
    assert (
        client.put(
            "/api/users/me/password", json={"current_password": NEW, "new_password": PASSWORD}
        ).status_code
        == 401
    )
