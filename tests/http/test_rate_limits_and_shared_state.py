"""Rate limits (429 + Retry-After), client addresses behind proxies, and two API instances
sharing one PostgreSQL and one Redis, as in production."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from interfaces.container import Container, build
from interfaces.http.app import create_app
from interfaces.settings import Settings, load_settings
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FAST_ARGON2, FakeClock, event_count
from tests.http.test_api import bearer, log_in, register_and_verify
from tests.servers import PostgresCluster, start_redis

Client = TestClient[Any]


def service(settings: Settings, clock: FakeClock) -> tuple[Container, Client]:
    container = build(settings, clock=clock)
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    return container, TestClient(create_app(container, run_background=False))


@pytest.fixture
def production(
    tmp_path: Path, postgres: PostgresCluster, redis_url: str, clock: FakeClock
) -> Iterator[list[tuple[Container, Client]]]:
    settings = load_settings(
        {
            **FAST_ARGON2,
            "DATA_DIR": str(tmp_path / "var"),
            "DATABASE_URL": postgres.new_database(),
            "REDIS_URL": redis_url,
            "RATE_LIMIT_LOGIN": "100/60,4/60",
        }
    )
    instances = [service(settings, clock) for _ in range(2)]
    for _, client in instances:
        client.__enter__()
    yield instances
    for _, client in instances:
        client.__exit__(None, None, None)


def test_a_logout_through_one_instance_is_honoured_by_the_other(
    production: list[tuple[Container, Client]],
) -> None:
    (one_container, one), (_, two) = production
    register_and_verify(one, one_container)
    tokens = log_in(one)
    assert two.get("/api/users/me", headers=bearer(tokens)).status_code == 200
    assert one.post("/api/auth/logout", headers=bearer(tokens)).status_code == 204
    answer = two.get("/api/users/me", headers=bearer(tokens))
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_access_token")


def test_the_login_limit_per_identifier_is_shared_by_instances(
    production: list[tuple[Container, Client]],
) -> None:
    (container, one), (_, two) = production
    register_and_verify(one, container)
    codes = []
    for attempt in range(6):
        client = one if attempt % 2 else two
        codes.append(
            client.post("/api/auth/login", json={"login": "ADA", "password": "nope, wrong"})
        )
    assert [r.status_code for r in codes[:4]] == [401] * 4
    limited = codes[4]
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 15
    before = event_count(container)
    assert (
        one.post("/api/auth/login", json={"login": "ada", "password": PASSWORD}).status_code == 429
    )
    assert event_count(container) == before, "a limited attempt must not reach the account"


def test_revocation_checks_fail_closed_when_redis_is_down(
    tmp_path: Path, postgres: PostgresCluster, clock: FakeClock
) -> None:
    redis_server = start_redis()
    settings = load_settings(
        {
            **FAST_ARGON2,
            "DATA_DIR": str(tmp_path / "var"),
            "DATABASE_URL": postgres.new_database(),
            "REDIS_URL": redis_server.url,
        }
    )
    container, client = service(settings, clock)
    with client:
        register_and_verify(client, container)
        tokens = log_in(client)
        assert client.get("/api/users/me", headers=bearer(tokens)).status_code == 200
        redis_server.stop()
        down = client.get("/api/users/me", headers=bearer(tokens))
        assert (down.status_code, down.json()["code"]) == (503, "unavailable")
        assert down.headers["retry-after"] == "1"
        # A login too: its session's refresh-token chain lives in Redis, and its tokens could
        # not be used anyway. Registrations still work: rate limits fall back to this
        # process's own, and a new account needs no mark.
        login = client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
        assert (login.status_code, login.json()["code"]) == (503, "unavailable")
        refresh = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert (refresh.status_code, refresh.json()["code"]) == (503, "unavailable")
        registered = client.post(
            "/api/auth/register",
            json={"email": "bob@example.com", "username": "bob", "password": PASSWORD},
        )
        assert registered.status_code == 201


def test_each_limited_endpoint_answers_429(client: Client, container: Container) -> None:
    del container
    for _ in range(10):
        client.post("/api/auth/forgot-password", json={"email": "x@example.com"})
    limited = client.post("/api/auth/forgot-password", json={"email": "x@example.com"})
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    assert int(limited.headers["retry-after"]) > 0


def test_x_forwarded_for_is_ignored_from_untrusted_peers(
    client: Client, container: Container
) -> None:
    """Without TRUSTED_PROXIES, a client cannot pick a fresh address to dodge its limit."""
    register_and_verify(client, container)
    answers = [
        client.post(
            "/api/auth/login",
            json={"login": f"nobody{n}", "password": "whatever it is"},
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
        ).status_code
        for n in range(31)
    ]
    assert answers[:30] == [401] * 30
    assert answers[30] == 429
