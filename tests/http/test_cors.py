"""CORS_ALLOWED_ORIGINS: a browser app on a listed origin may call /api/* with its Bearer
token; any other origin, the pages, and everything else get no CORS header; credentials never."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from interfaces.container import Container
from interfaces.http.app import create_app
from interfaces.settings import load_settings
from tests.conftest import FakeClock
from tests.http.test_api import bearer, log_in, register_and_verify
from tests.http.test_pages import pages_container

Client = TestClient[Any]
APP = "https://app.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}


@pytest.fixture
def cors(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Client, Container]]:
    container = pages_container(
        tmp_path, clock, CORS_ALLOWED_ORIGINS=f"{APP}, http://localhost:5173"
    )
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    with TestClient(create_app(container, run_background=False)) as client:
        client.follow_redirects = False
        yield client, container
    container.close()


def cors_headers(answer: Any) -> dict[str, str]:
    return {k: v for k, v in answer.headers.items() if k.lower().startswith("access-control-")}


def test_a_listed_origin_may_call_the_api_with_its_token(cors: tuple[Client, Container]) -> None:
    client, container = cors
    register_and_verify(client, container)
    tokens = log_in(client)
    preflight = client.options("/api/users/me", headers={"Origin": APP, **PREFLIGHT})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == APP
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert "origin" in preflight.headers["vary"].lower()

    me = client.get("/api/users/me", headers={"Origin": APP, **bearer(tokens)})
    assert me.status_code == 200
    assert me.headers["access-control-allow-origin"] == APP
    exposed = me.headers["access-control-expose-headers"]
    for header in ("Tessera-Read-Behind", "Retry-After", "WWW-Authenticate"):
        assert header in exposed
    # A refusal is readable too: the app must see the 401 and why.
    refused = client.get("/api/users/me", headers={"Origin": APP, "Authorization": "Bearer x"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == APP
    assert "access-control-allow-credentials" not in refused.headers
    assert "access-control-allow-credentials" not in me.headers
    assert "access-control-allow-credentials" not in preflight.headers


def test_another_origin_gets_no_cors_header(cors: tuple[Client, Container]) -> None:
    client, _ = cors
    for origin in ("https://evil.example", "https://app.example.com.evil.example", "null"):
        preflight = client.options("/api/users/me", headers={"Origin": origin, **PREFLIGHT})
        assert cors_headers(preflight) == {}, origin
        answer = client.get("/api/users/me", headers={"Origin": origin})
        assert cors_headers(answer) == {}, origin


def test_the_pages_and_the_rest_get_no_cors_header(cors: tuple[Client, Container]) -> None:
    client, _ = cors
    for path in ("/login", "/account", "/", "/.well-known/jwks.json", "/health/live", "/schema"):
        answer = client.get(path, headers={"Origin": APP})
        assert cors_headers(answer) == {}, path
        preflight = client.options(path, headers={"Origin": APP, **PREFLIGHT})
        assert cors_headers(preflight) == {}, path


def test_no_origin_is_allowed_by_default(client: Client) -> None:
    for answer in (
        client.options("/api/users/me", headers={"Origin": APP, **PREFLIGHT}),
        client.get("/api/users/me", headers={"Origin": APP}),
    ):
        assert cors_headers(answer) == {}


@pytest.mark.parametrize(
    "listed",
    [
        "*",
        "https://app.example.com/",
        "https://app.example.com/path",
        "app.example.com",
        "https://App.example.com",
        "https://app.example.com:443",
        "ftp://app.example.com",
        "https://user@app.example.com",
        "https://app.example.com, *",
    ],
)
def test_a_listing_that_is_not_an_exact_origin_is_refused_at_start(listed: str) -> None:
    with pytest.raises(SystemExit, match="CORS_ALLOWED_ORIGINS"):
        load_settings({"CORS_ALLOWED_ORIGINS": listed})


def test_exact_origins_are_taken() -> None:
    settings = load_settings(
        {"CORS_ALLOWED_ORIGINS": "https://app.example.com,http://localhost:5173,http://[::1]:8080"}
    )
    assert settings.cors_origins == {
        "https://app.example.com",
        "http://localhost:5173",
        "http://[::1]:8080",
    }
