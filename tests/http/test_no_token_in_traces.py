"""No token reaches a trace backend: a full flow through the real ASGI app (the API and the
pages, a provider sign-in against a real OpenID Provider) with every span kept in memory by
OpenTelemetry's own exporter, then every span's name, attributes, events, links and status
searched for every secret the flow saw: the mail links' tokens, passwords, access and refresh
tokens, the MFA token, the TOTP secret and recovery codes, the provider's code and state, the
one-time exchange codes, and the cookies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pyotp
import pytest
from litestar.testing import TestClient

from interfaces.container import Container, build
from interfaces.http.app import create_app
from interfaces.settings import load_settings
from tests.application.test_account_security import reset_link, token_of
from tests.application.test_use_cases import PASSWORD, mailed_token
from tests.conftest import FAST_ARGON2, FakeClock
from tests.http.test_pages import csrf_token
from tests.oidc.harness import OidcProvider, sign_in

Client = TestClient[Any]
PUBLIC_URL = "http://127.0.0.1:8000"
APP = "http://127.0.0.1:9999/signed-in"
PAGES_URI = f"{PUBLIC_URL}/login/oidc"
NEW_PASSWORD = "a new passphrase & then some"  # characters a URL would encode


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    client = {
        "client_id": "tessera-idp",
        "client_secret": "idp-client-secret",
        "redirect_uris": [f"{PUBLIC_URL}/api/auth/oidc/idp/callback"],
    }
    accounts = {"alice-sub": {"email": "alice@example.com", "email_verified": True}}
    with OidcProvider(clients=[client], accounts=accounts) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgres+redis"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, idp: OidcProvider
) -> Iterator[tuple[Client, Container]]:
    environ = {
        "DATA_DIR": str(tmp_path / "var"),
        **FAST_ARGON2,
        "OIDC_PROVIDERS": "idp",
        "OIDC_REDIRECT_URIS": APP,
        "OIDC_IDP_ISSUER": idp.issuer,
        "OIDC_IDP_CLIENT_ID": "tessera-idp",
        "OIDC_IDP_CLIENT_SECRET": "idp-client-secret",
    }
    if request.param == "postgres+redis":
        environ["DATABASE_URL"] = request.getfixturevalue("postgres").new_database()
        environ["REDIS_URL"] = request.getfixturevalue("redis_url")
    container = build(load_settings(environ), clock=clock)
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    try:
        with TestClient(create_app(container, run_background=False)) as client:
            client.follow_redirects = False
            yield client, container
    finally:
        container.close()


class Seen:
    """Every secret the flow handled, as it went."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add(self, *values: Any) -> None:
        for value in values:
            if isinstance(value, dict):
                self.add(*value.values())
            elif isinstance(value, list):
                self.add(*value)
            elif isinstance(value, str) and len(value) >= 8:
                self.secrets.add(value)

    def cookies(self, client: Client) -> None:
        self.add(*(cookie.value for cookie in client.cookies.jar if cookie.value))


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def code_in(location: str) -> str:
    return parse_qs(urlsplit(location).query)["code"][0]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def full_flow(client: Client, container: Container, clock: FakeClock, seen: Seen) -> None:
    seen.add(PASSWORD, NEW_PASSWORD)
    # Registration, and the verification link: its page (GET, with the token in the URL), then
    # the API.
    registered = client.post(
        "/api/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    token = mailed_token(container, "ada@example.com")
    seen.add(token)
    assert client.get("/verify-email", params={"token": token}).status_code == 200
    assert client.post("/api/auth/verify-email", json={"token": token}).status_code == 200

    # Login, refresh (the token in the body), MFA on, the MFA step.
    tokens = client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD}).json()
    seen.add(tokens)
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    tokens = refreshed.json()
    seen.add(tokens)
    enabled = client.post(
        "/api/users/me/mfa", headers=bearer(tokens["access_token"]), json={"action": "enable"}
    ).json()
    seen.add(enabled)
    totp = pyotp.TOTP(enabled["secret"])
    confirmed = client.post(
        "/api/users/me/mfa",
        headers=bearer(tokens["access_token"]),
        json={"action": "confirm", "code": totp.at(clock.now().timestamp())},
    )
    assert confirmed.status_code == 200, confirmed.text
    seen.add(confirmed.json())
    clock.advance(seconds=30)
    challenge = client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD}).json()
    seen.add(challenge)
    second = client.post(
        "/api/auth/login/mfa",
        json={"mfa_token": challenge["mfa_token"], "code": totp.at(clock.now().timestamp())},
    )
    assert second.status_code == 200, second.text
    seen.add(second.json())

    # The password reset link: its page, then the API.
    assert client.post("/api/auth/forgot-password", json={"email": "ada@example.com"}).is_success
    reset = token_of(reset_link(container, "ada@example.com"))
    seen.add(reset)
    assert client.get("/reset-password", params={"token": reset}).status_code == 200
    done = client.post(
        "/api/auth/reset-password", json={"token": reset, "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 204, done.text

    # A provider sign-in for an app: the provider's code and state at the callback, the
    # one-time code at the exchange.
    started = client.get("/api/auth/oidc/idp/start", params={"redirect_uri": APP})
    seen.cookies(client)
    callback = sign_in(started.headers["location"], "alice-sub")
    seen.add(*(values[0] for values in parse_qs(urlsplit(callback).query).values()))
    landed = client.get(local(callback))
    assert landed.status_code == 303, landed.text
    code = code_in(landed.headers["location"])
    seen.add(code)
    signed_in = client.post("/api/auth/oidc/exchange", json={"code": code})
    assert signed_in.status_code == 200, signed_in.text
    seen.add(signed_in.json())

    # The same on the pages: the one-time code in the landing page's URL, then its form.
    started = client.get("/api/auth/oidc/idp/start", params={"redirect_uri": PAGES_URI})
    callback = sign_in(started.headers["location"], "alice-sub")
    seen.add(*(values[0] for values in parse_qs(urlsplit(callback).query).values()))
    landed = client.get(local(callback))
    code = code_in(landed.headers["location"])
    seen.add(code)
    page = client.get(local(landed.headers["location"]))
    assert page.status_code == 200, page.text
    finished = client.post("/login/oidc", data={"csrf_token": csrf_token(page.text), "code": code})
    assert (finished.status_code, finished.headers["location"]) == (303, "/account"), finished.text
    seen.cookies(client)

    # Logout, with the refresh token in the body.
    out = client.post(
        "/api/auth/logout",
        headers=bearer(signed_in.json()["access_token"]),
        json={"refresh_token": signed_in.json()["refresh_token"]},
    )
    assert out.status_code == 204, out.text


def recorded_text(span: Any) -> list[str]:
    """Everything an exporter would send of a span."""
    texts = [span.name, str(span.status.description or "")]
    for attributes in (
        span.attributes,
        span.resource.attributes,
        *(event.attributes for event in span.events),
        *(link.attributes for link in span.links),
    ):
        texts += [f"{key}={value}" for key, value in (attributes or {}).items()]
    texts += [event.name for event in span.events]
    return texts


def test_a_span_export_of_a_full_flow_holds_no_token(
    site: tuple[Client, Container], clock: FakeClock, spans: Any
) -> None:
    client, container = site
    seen = Seen()
    spans.clear()
    full_flow(client, container, clock, seen)
    finished = spans.get_finished_spans()
    texts = [text for span in finished for text in recorded_text(span)]
    assert seen.secrets and len(finished) > 30

    # The URLs are there, for what they say about the request, with every value redacted.
    urls = {urlsplit(str(s.attributes.get("http.url"))) for s in finished if s.attributes}
    queries = {(url.path, url.query) for url in urls}
    assert ("/verify-email", "token=REDACTED") in queries
    assert ("/reset-password", "token=REDACTED") in queries
    assert ("/login/oidc", "code=REDACTED") in queries
    assert any(
        path == "/api/auth/oidc/idp/callback" and re.fullmatch(r"(\w+=REDACTED&?)+", query)
        for path, query in queries
    ), queries

    leaks = {
        secret
        for secret in seen.secrets
        for form in {secret, quote(secret), quote_plus(secret)}
        if any(form in text for text in texts)
    }
    assert not leaks, [text for text in texts if any(leak in text for leak in leaks)]


def test_captured_headers_that_carry_credentials_are_redacted(
    tmp_path: Path, clock: FakeClock, spans: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator who has the instrumentation capture headers in spans gets the ones that
    carry a credential (Authorization, Cookie, Set-Cookie) redacted: the app names them."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE", ".*")
    container = build(
        load_settings({"DATA_DIR": str(tmp_path / "var"), **FAST_ARGON2}), clock=clock
    )
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    seen = Seen()
    try:
        with TestClient(create_app(container, run_background=False)) as client:
            spans.clear()
            client.post(
                "/api/auth/register",
                json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
            )
            client.post(
                "/api/auth/verify-email",
                json={"token": mailed_token(container, "ada@example.com")},
            )
            tokens = client.post(
                "/api/auth/login", json={"login": "ada", "password": PASSWORD}
            ).json()
            seen.add(tokens)
            me = client.get("/api/users/me", headers=bearer(tokens["access_token"]))
            assert me.status_code == 200
            page = client.get("/login")  # sets the pages' CSRF cookie
            seen.cookies(client)
            assert page.cookies and client.get("/login").status_code == 200
    finally:
        container.close()
    finished = spans.get_finished_spans()
    captured = {
        key: value
        for span in finished
        for key, value in (span.attributes or {}).items()
        if key.startswith(("http.request.header.", "http.response.header."))
    }
    assert "http.request.header.authorization" in captured, sorted(captured)
    assert "http.response.header.set_cookie" in captured, sorted(captured)
    texts = [text for span in finished for text in recorded_text(span)]
    assert seen.secrets
    assert not [text for text in texts if any(secret in text for secret in seen.secrets)]


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("http://h/verify-email?token=abc", "http://h/verify-email?token=REDACTED"),
        ("/cb?code=a&state=b&iss=http://x", "/cb?code=REDACTED&state=REDACTED&iss=REDACTED"),
        ("/x?bare&empty=", "/x?REDACTED&empty=REDACTED"),
        ("/no-query", "/no-query"),
    ],
)
def test_every_query_value_is_redacted_and_the_names_kept(url: str, redacted: str) -> None:
    from infrastructure.tracing import redacted_url

    assert redacted_url(url) == redacted
