"""CORS_ALLOWED_ORIGINS: a browser app on a listed origin may call /api/* with its Bearer
token; a registered client's web origin may call the provider's token, userinfo and revocation
endpoints; discovery and the JWKS are public; any other origin, the pages, and everything else
get no CORS header; credentials never."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from application.clients.origins import REREAD_AFTER
from application.clients.registry import Clients
from domain.client import ClientSettings
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
    for path in ("/login", "/account", "/", "/health/live", "/schema", "/oauth2/token"):
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


SPA = "https://spa.example"
SPA_CLIENT = ClientSettings(
    name="Single-page app",
    public=True,
    redirect_uris=(f"{SPA}/callback", f"{SPA}/silent-renew", "http://127.0.0.1:5173/cb"),
    grant_types=("authorization_code", "refresh_token"),
)
PROVIDER_ENDPOINTS = ("/oauth2/token", "/oauth2/userinfo", "/oauth2/revoke")
POST_PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def provider_preflight(client: Client, path: str, origin: str) -> Any:
    return client.options(path, headers={"Origin": origin, **POST_PREFLIGHT})


def test_a_client_web_origin_may_call_the_token_userinfo_and_revocation_endpoints(
    client: Client, container: Container
) -> None:
    container.clients.register(SPA_CLIENT, "test")
    # By default the origins of its redirect URIs, the loopback one included.
    for origin in (SPA, "http://127.0.0.1:5173"):
        for path in PROVIDER_ENDPOINTS:
            preflight = provider_preflight(client, path, origin)
            assert preflight.status_code == 204, path
            assert preflight.headers["access-control-allow-origin"] == origin
            assert "POST" in preflight.headers["access-control-allow-methods"]
            allowed = preflight.headers["access-control-allow-headers"].lower()
            assert "authorization" in allowed and "content-type" in allowed
            assert "origin" in preflight.headers["vary"].lower()
            assert "access-control-allow-credentials" not in preflight.headers
    # The answer itself, a refusal included, is readable by the app, never with credentials.
    refused = client.post(
        "/oauth2/token", data={"grant_type": "refresh_token"}, headers={"Origin": SPA}
    )
    assert refused.status_code in (400, 401)
    assert refused.headers["access-control-allow-origin"] == SPA
    assert "WWW-Authenticate" in refused.headers["access-control-expose-headers"]
    assert "access-control-allow-credentials" not in refused.headers
    assert "origin" in refused.headers["vary"].lower()
    userinfo = client.get("/oauth2/userinfo", headers={"Origin": SPA, "Authorization": "Bearer x"})
    assert userinfo.status_code == 401
    assert userinfo.headers["access-control-allow-origin"] == SPA
    assert "access-control-allow-credentials" not in userinfo.headers


def test_an_origin_no_live_client_registered_gets_no_cors_header(
    client: Client, container: Container
) -> None:
    container.clients.register(
        ClientSettings(
            name="Listed origins", redirect_uris=(f"{SPA}/callback",), web_origins=(APP,)
        ),
        "test",
    )
    # Registered web origins replace the redirect URIs' origins.
    assert cors_headers(provider_preflight(client, "/oauth2/token", APP)) != {}
    for origin in (SPA, "https://evil.example", f"{APP}.evil.example", "null", f"{APP}:443"):
        for path in PROVIDER_ENDPOINTS:
            assert cors_headers(provider_preflight(client, path, origin)) == {}, (origin, path)
        answer = client.post("/oauth2/token", data={}, headers={"Origin": origin})
        assert cors_headers(answer) == {}, origin
    # Only the endpoints a browser app calls: introspection is an API's, the rest navigation.
    for path in ("/oauth2/introspect", "/oauth2/authorize", "/oauth2/logout", "/api/users/me"):
        assert cors_headers(provider_preflight(client, path, APP)) == {}, path


def test_a_removed_client_origin_is_refused(
    client: Client, container: Container, clock: FakeClock
) -> None:
    removed = container.clients.register(SPA_CLIENT, "test")
    assert provider_preflight(client, "/oauth2/token", SPA).status_code == 204
    container.clients.remove(removed.client_id, "test")
    assert cors_headers(provider_preflight(client, "/oauth2/token", SPA)) == {}

    # Removed by another process (the admin CLI): refused once the origins are read again.
    again = container.clients.register(SPA_CLIENT, "test")
    assert provider_preflight(client, "/oauth2/token", SPA).status_code == 204
    Clients(container.log, clock).remove(again.client_id, "cli")
    clock.advance(seconds=REREAD_AFTER.total_seconds())
    assert cors_headers(provider_preflight(client, "/oauth2/token", SPA)) == {}


def test_a_changed_web_origin_takes_effect_at_once(client: Client, container: Container) -> None:
    issued = container.clients.register(SPA_CLIENT, "test")
    assert provider_preflight(client, "/oauth2/token", SPA).status_code == 204
    container.clients.update(issued.client_id, {"web_origins": (APP,)}, "test")
    assert cors_headers(provider_preflight(client, "/oauth2/token", SPA)) == {}
    assert provider_preflight(client, "/oauth2/token", APP).status_code == 204


def test_the_first_party_origins_do_not_reach_the_provider_endpoints(
    cors: tuple[Client, Container],
) -> None:
    client, container = cors
    container.clients.register(SPA_CLIENT, "test")
    assert cors_headers(provider_preflight(client, "/oauth2/token", APP)) == {}
    assert cors_headers(client.options("/api/users/me", headers={"Origin": SPA, **PREFLIGHT})) == {}


def test_discovery_and_the_jwks_are_public_to_any_origin(client: Client) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json"):
        answer = client.get(path, headers={"Origin": "https://anyone.example"})
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in answer.headers
        preflight = client.options(
            path,
            headers={"Origin": "https://anyone.example", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert preflight.headers["access-control-allow-methods"] == "GET"
        assert "access-control-allow-credentials" not in preflight.headers
        # Not a cross-origin call: nothing to answer.
        assert cors_headers(client.get(path)) == {}
