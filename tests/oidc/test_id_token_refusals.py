"""ID tokens that must be refused, from a test-controlled issuer: a real HTTP server in the test
serving discovery, JWKS and a token endpoint whose ID token the test signs with joserfc (the
real provider never mints bad ones). Each refusal is a 401 `invalid_identity_response` that
records nothing; and a rotated key is fetched again, so a good token after rotation passes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from interfaces.container import Container
from interfaces.settings import Settings, load_settings
from tests.conftest import FAST_ARGON2, event_count
from tests.oidc.test_oidc_sign_in import APP, Client, back, code_of

CLIENT_ID = "tessera-test"
Claims = dict[str, Any]


class TestIssuer:
    """Discovery, JWKS and a token endpoint on 127.0.0.1; `mint` decides each ID token from
    the nonce the authorization request carried."""

    __test__ = False

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})]
        self.mint: Callable[[TestIssuer, str], str] = good_token
        self.nonces: dict[str, str] = {}  # code -> nonce
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def claims(self, nonce: str, **changes: Any) -> Claims:
        now = int(time.time())
        return {
            "iss": self.issuer, "sub": "subject-1", "aud": CLIENT_ID, "iat": now,
            "exp": now + 300, "nonce": nonce, "email": "tess@example.com",
            "email_verified": True, **changes,
        }  # fmt: skip

    def sign(self, claims: Claims, key: RSAKey | None = None, alg: str = "RS256") -> str:
        key = key or self.keys[0]
        return jwt.encode({"alg": alg, "kid": key.kid}, claims, key)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, document: Any) -> None:
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urlsplit(self.path)
                if path.path == "/.well-known/openid-configuration":
                    self._json({
                        "issuer": issuer.issuer,
                        "authorization_endpoint": f"{issuer.issuer}/authorize",
                        "token_endpoint": f"{issuer.issuer}/token",
                        "jwks_uri": f"{issuer.issuer}/jwks",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    })  # fmt: skip
                elif path.path == "/jwks":
                    self._json({"keys": [k.as_dict(private=False) for k in issuer.keys]})
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                nonce = issuer.nonces.get(form["code"][0], "")
                self._json({
                    "access_token": "at", "token_type": "Bearer",
                    "id_token": issuer.mint(issuer, nonce),
                })  # fmt: skip

        return Handler

    def authorize(self, authorization_url: str) -> str:
        """What the provider would answer: a code (remembering the nonce) and the state."""
        query = parse_qs(urlsplit(authorization_url).query)
        code = f"code-{len(self.nonces)}"
        self.nonces[code] = query["nonce"][0]
        return f"{query['redirect_uri'][0]}?code={code}&state={query['state'][0]}"


def good_token(issuer: TestIssuer, nonce: str) -> str:
    return issuer.sign(issuer.claims(nonce))


@pytest.fixture(scope="module")
def test_issuer() -> Iterator[TestIssuer]:
    issuer = TestIssuer()
    yield issuer
    issuer.server.shutdown()


@pytest.fixture
def settings(tmp_path: Path, test_issuer: TestIssuer) -> Settings:
    test_issuer.mint = good_token
    return load_settings(
        {
            "DATA_DIR": str(tmp_path / "var"),
            **FAST_ARGON2,
            "OIDC_PROVIDERS": "test",
            "OIDC_REDIRECT_URIS": APP,
            "OIDC_TEST_ISSUER": test_issuer.issuer,
            "OIDC_TEST_CLIENT_ID": CLIENT_ID,
            "OIDC_TEST_CLIENT_SECRET": "secret",
        }
    )


def round_trip(client: Client, issuer: TestIssuer) -> Any:
    started = client.get(
        "/api/auth/oidc/test/start", params={"redirect_uri": APP}, follow_redirects=False
    )
    assert started.status_code == 302, started.text
    location = started.headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["response_type"] == ["code"] and query["nonce"][0] and query["state"][0]
    return back(client, issuer.authorize(location))


def unknown_key(issuer: TestIssuer, nonce: str) -> str:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    return issuer.sign(issuer.claims(nonce), key=stranger)


def alg_none(issuer: TestIssuer, nonce: str) -> str:
    import base64

    def part(document: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'kid': 'k1'})}.{part(issuer.claims(nonce))}."


def tampered(issuer: TestIssuer, nonce: str) -> str:
    header, _, signature = issuer.sign(issuer.claims(nonce)).split(".")
    import base64

    forged = issuer.claims(nonce, sub="someone-else")
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


def hs256_with_the_secret(issuer: TestIssuer, nonce: str) -> str:
    from joserfc.jwk import OctKey

    return jwt.encode({"alg": "HS256"}, issuer.claims(nonce), OctKey.import_key("secret" * 6))


BAD_TOKENS: dict[str, Callable[[TestIssuer, str], str]] = {
    "another aud": lambda i, n: i.sign(i.claims(n, aud="someone-else")),
    "another iss": lambda i, n: i.sign(i.claims(n, iss="https://evil.example")),
    "expired": lambda i, n: i.sign(i.claims(n, exp=int(time.time()) - 600)),
    "issued in the future": lambda i, n: i.sign(i.claims(n, iat=int(time.time()) + 3600)),
    "wrong nonce": lambda i, n: i.sign(i.claims("not-" + n)),
    "no nonce": lambda i, n: i.sign({k: v for k, v in i.claims(n).items() if k != "nonce"}),
    "unknown key": unknown_key,
    "alg none": alg_none,
    "tampered": tampered,
    "HS256 with the client secret": hs256_with_the_secret,
    "several audiences, another azp": lambda i, n: i.sign(
        i.claims(n, aud=[CLIENT_ID, "other"], azp="other")
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_id_token_is_a_401_that_records_nothing(
    client: Client, container: Container, test_issuer: TestIssuer, case: str
) -> None:
    test_issuer.mint = BAD_TOKENS[case]
    before = event_count(container)
    refused = round_trip(client, test_issuer)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_identity_response")
    assert event_count(container) == before


def test_a_good_token_signs_in_and_a_rotated_key_is_fetched_again(
    client: Client, container: Container, test_issuer: TestIssuer
) -> None:
    code = code_of(round_trip(client, test_issuer))
    assert client.post("/api/auth/oidc/exchange", json={"code": code}).status_code == 200
    rotated = RSAKey.generate_key(2048, parameters={"kid": f"k{time.time_ns()}", "use": "sig"})
    test_issuer.keys.insert(0, rotated)
    try:
        time.sleep(0)  # the JWKS was fetched moments ago; an unknown kid still refetches
        import infrastructure.oidc as oidc

        oidc_refetch = oidc._JWKS_REFETCH_AFTER
        oidc._JWKS_REFETCH_AFTER = 0.0
        code = code_of(round_trip(client, test_issuer))
        assert client.post("/api/auth/oidc/exchange", json={"code": code}).status_code == 200
    finally:
        oidc._JWKS_REFETCH_AFTER = oidc_refetch
        test_issuer.keys.remove(rotated)


@pytest.mark.serial  # the 5 s timeout must end the wait within 6.5 s: alone
def test_a_provider_that_hangs_is_a_502_within_the_timeout(
    client: Client, container: Container, test_issuer: TestIssuer
) -> None:
    started = client.get(
        "/api/auth/oidc/test/start", params={"redirect_uri": APP}, follow_redirects=False
    )
    callback = test_issuer.authorize(started.headers["location"])

    def slow(issuer: TestIssuer, nonce: str) -> str:
        time.sleep(7)  # beyond OIDC_TIMEOUT (5 s by default)
        return good_token(issuer, nonce)

    test_issuer.mint = slow
    began = time.monotonic()
    refused = back(client, callback)
    assert (refused.status_code, refused.json()["code"]) == (502, "provider_unavailable")
    assert time.monotonic() - began < 6.5  # the timeout, not the provider, ended the wait
