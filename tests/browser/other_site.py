"""An app on another site than tessera's, for the browser tests of what the OpenID Provider
does on a cross-site navigation: tessera's page session cookies are SameSite=Strict, so the
app's links arrive without them."""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.browser.harness import CHROMIUM_FLAGS, ensure_chromium
from tests.browser.test_pages_in_browser import EMAIL, PASSWORD, Person
from tests.e2e.test_serve import run_tessera
from tests.servers import free_port

playwright = pytest.importorskip("playwright.sync_api")
# RFC 7636, appendix B: this verifier's S256 challenge.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


class App:
    """A relying party's two pages on 127.0.0.1 (another site than tessera's localhost): a
    link (`link`), and the callback, which keeps what it was sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.callback = f"{self.origin}/cb"
        self.link = ""
        self.received: list[dict[str, str]] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/cb":
                    app.received.append({k: v[0] for k, v in parse_qs(parts.query).items()})
                    body = "<!doctype html><title>App</title><h1>Signed in to the app</h1>"
                else:
                    body = (
                        "<!doctype html><title>App</title>"
                        f'<a id="sign-in" href="{html.escape(app.link)}">Sign in with Tessera</a>'
                    )
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def register(self, base: str, data_dir: Path, *options: str) -> str:
        """Registers the app with the served tessera (`tessera admin client create`) as the
        public client "Wiki" with its callback and the scopes openid and email, and `options`;
        its client id."""
        made = run_tessera(
            data_dir,
            *("admin", "client", "create", "Wiki", "--public"),
            *("--redirect-uri", self.callback, "--scope", "openid", "--scope", "email"),
            *options,
            PUBLIC_URL=base,
        )
        return str(json.loads(made)["client_id"])

    def authorize_link(self, base: str, client_id: str, state: str) -> str:
        """A link to tessera's authorization endpoint, for openid and email, with PKCE S256."""
        return f"{base}/oauth2/authorize?" + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": self.callback,
                "scope": "openid email",
                "state": state,
                "code_challenge": CHALLENGE,
                "code_challenge_method": "S256",
            }
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sign_in(me: Person) -> None:
    me.page.goto(f"{me.base}/login")
    me.page.fill("#login", "ada")
    me.page.fill("#password", PASSWORD)
    me.press("Sign in")
    assert me.heading() == "My account"


@contextmanager
def signed_in_person(base: str, data_dir: Path) -> Iterator[tuple[Any, Person]]:
    """Ada registered, her email address confirmed and signed in on tessera's pages in a fresh
    chromium: its browser context, and her."""
    executable = ensure_chromium()
    registered = httpx.post(
        f"{base}/api/auth/register",
        json={"email": EMAIL, "username": "ada", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 800})
            me = Person(context.new_page(), base, data_dir / "mail")
            me.page.goto(me.link_from_mail("verify-email", set()))
            me.press("Confirm my email address")
            sign_in(me)
            yield context, me
        finally:
            browser.close()
