"""End to end: a real `tessera serve` exports its spans over OTLP/HTTP to a collector (a small
OTLP receiver in this test, decoding OpenTelemetry's own protobuf), on the embedded default and
on PostgreSQL. A full flow runs against it (the mail links' pages and API, login, refresh, MFA,
reset, a provider sign-in on the API and on the pages, logout), and every byte the collector
received is searched for every token, code and password the flow saw."""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx
import pyotp
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.e2e.test_serve import PASSWORD, serving, wait_for_mail
from tests.http.test_pages import csrf_token
from tests.oidc.harness import OidcProvider, sign_in
from tests.servers import free_port

APP = "http://127.0.0.1:9999/signed-in"
NEW_PASSWORD = "another passphrase & more"


class Collector:
    """An OTLP/HTTP trace receiver: keeps each export's raw body, answers as a collector does."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received.append(body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def span_names(self) -> set[str]:
        names = set()
        for body in list(self.bodies):
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    names |= {span.name for span in scope.spans}
        return names

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(params=["sqlite", "postgres"])
def traced_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Path, Collector]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = {
        "client_id": "tessera",
        "client_secret": "e2e-client-secret",
        "redirect_uris": [f"{base}/api/auth/oidc/idp/callback"],
    }
    accounts = {"alice-sub": {"email": "alice@example.com", "email_verified": True}}
    collector = Collector()
    try:
        with (
            OidcProvider(clients=[client], accounts=accounts) as idp,
            serving(
                request.param,
                request,
                tmp_path,
                PORT=str(port),
                PUBLIC_URL=base,
                OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                OTEL_BSP_SCHEDULE_DELAY="100",  # export within a tenth of a second
                OIDC_PROVIDERS="idp",
                OIDC_REDIRECT_URIS=APP,
                OIDC_IDP_ISSUER=idp.issuer,
                OIDC_IDP_CLIENT_ID="tessera",
                OIDC_IDP_CLIENT_SECRET="e2e-client-secret",
            ) as (_, data_dir),
        ):
            yield base, data_dir, collector
    finally:
        collector.close()


def reset_mail(mail_dir: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in mail_dir.glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if "reset" in str(message["Subject"]).lower():
                text: str = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                return text
        time.sleep(0.05)
    raise TimeoutError(f"no reset mail in {mail_dir}")


def link_token(text: str, path: str) -> str:
    match = re.search(rf"/{path}\?token=([A-Za-z0-9_-]+)", text)
    assert match, text
    return match.group(1)


def provider_code(http: httpx.Client, redirect_uri: str, secrets: set[str]) -> str:
    """A provider sign-in up to tessera's one-time code: the provider's code and state at the
    callback, the flow cookie, and the code itself are all secrets of the flow."""
    started = http.get("/api/auth/oidc/idp/start", params={"redirect_uri": redirect_uri})
    assert started.status_code == 302, started.text
    callback = urlsplit(sign_in(started.headers["location"], "alice-sub"))
    secrets.update(values[0] for values in parse_qs(callback.query).values())
    secrets.update(cookie.value for cookie in http.cookies.jar if cookie.value)
    landed = http.get(f"{callback.path}?{callback.query}")
    assert landed.status_code == 303, landed.text
    code = parse_qs(urlsplit(landed.headers["location"]).query)["code"][0]
    secrets.add(code)
    return code


def test_the_collector_receives_no_token_of_a_full_flow(
    traced_server: tuple[str, Path, Collector],
) -> None:
    base, data_dir, collector = traced_server
    secrets = {PASSWORD, NEW_PASSWORD}
    with httpx.Client(base_url=base, timeout=20, follow_redirects=False) as http:
        registered = http.post(
            "/api/auth/register",
            json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        token = link_token(wait_for_mail(data_dir / "mail", "ada@example.com"), "verify-email")
        secrets.add(token)
        assert http.get("/verify-email", params={"token": token}).status_code == 200
        assert http.post("/api/auth/verify-email", json={"token": token}).status_code == 200

        tokens = http.post("/api/auth/login", json={"login": "ada", "password": PASSWORD}).json()
        refreshed = http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        auth = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        enabled = http.post("/api/users/me/mfa", headers=auth, json={"action": "enable"}).json()
        confirmed = http.post(
            "/api/users/me/mfa",
            headers=auth,
            json={"action": "confirm", "code": pyotp.TOTP(enabled["secret"]).now()},
        )
        assert confirmed.status_code == 200, confirmed.text
        recovery = confirmed.json()["recovery_codes"]
        challenge = http.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
        second = http.post(
            "/api/auth/login/mfa",
            json={"mfa_token": challenge.json()["mfa_token"], "code": recovery[0]},
        )
        assert second.status_code == 200, second.text
        for answer in (tokens, refreshed.json(), second.json()):
            secrets.update(v for v in answer.values() if isinstance(v, str))
        secrets.update([enabled["secret"], enabled["otpauth_uri"], *recovery])
        secrets.add(challenge.json()["mfa_token"])

        assert http.post("/api/auth/forgot-password", json={"email": "ada@example.com"}).is_success
        reset = link_token(reset_mail(data_dir / "mail"), "reset-password")
        secrets.add(reset)
        assert http.get("/reset-password", params={"token": reset}).status_code == 200
        done = http.post(
            "/api/auth/reset-password", json={"token": reset, "new_password": NEW_PASSWORD}
        )
        assert done.status_code == 204, done.text

        code = provider_code(http, APP, secrets)
        signed_in = http.post("/api/auth/oidc/exchange", json={"code": code})
        assert signed_in.status_code == 200, signed_in.text
        secrets.update(v for v in signed_in.json().values() if isinstance(v, str))
        code = provider_code(http, f"{base}/login/oidc", secrets)
        page = http.get("/login/oidc", params={"code": code})
        finished = http.post(
            "/login/oidc", data={"csrf_token": csrf_token(page.text), "code": code}
        )
        assert finished.status_code == 303, finished.text
        secrets.update(cookie.value for cookie in http.cookies.jar if cookie.value)

        out = http.post(
            "/api/auth/logout",
            headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"},
            json={"refresh_token": signed_in.json()["refresh_token"]},
        )
        assert out.status_code == 204, out.text

    deadline = time.monotonic() + 20
    while "POST /api/auth/logout" not in collector.span_names():
        assert time.monotonic() < deadline, sorted(collector.span_names())
        time.sleep(0.1)
    exported = b"".join(collector.bodies)
    assert b"token=REDACTED" in exported and b"code=REDACTED" in exported
    secrets = {s for s in secrets if len(s) >= 8}
    leaks = [
        secret
        for secret in secrets
        for form in {secret, quote(secret), quote_plus(secret)}
        if form.encode() in exported
    ]
    assert not leaks, leaks
