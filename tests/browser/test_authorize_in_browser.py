"""The authorization endpoint in a real browser, reached from an app on another site: the
page session's cookies are SameSite=Strict, so the app's link arrives without them; tessera's
same-site re-navigation brings them, and a signed-in person goes straight to the consent page
(not the sign-in page), allows the app, and the app's callback receives the code and state."""

from __future__ import annotations

import html
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.browser.harness import CHROMIUM_FLAGS, ensure_chromium
from tests.browser.test_pages_in_browser import EMAIL, PASSWORD, Person, serve
from tests.e2e.test_serve import tessera
from tests.servers import free_port

playwright = pytest.importorskip("playwright.sync_api")


class App:
    """A relying party's two pages on 127.0.0.1 (another site than tessera's localhost): a
    link to sign in, and the callback, which keeps what it was sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
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

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def app() -> Iterator[App]:
    made = App()
    yield made
    made.close()


def test_an_app_on_another_site_reaches_the_consent_of_a_signed_in_person(
    tmp_path: Path, app: App
) -> None:
    executable = ensure_chromium()
    for base, data_dir in serve(tmp_path):
        env = {**os.environ, "DATA_DIR": str(data_dir), "PUBLIC_URL": base}
        for name in ("DATABASE_URL", "REDIS_URL", "LOG_FILE"):
            env.pop(name, None)
        made = subprocess.run(
            [
                *(tessera(), "admin", "client", "create", "Wiki", "--public"),
                *("--redirect-uri", f"{app.origin}/cb", "--scope", "openid", "--scope", "email"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        client_id = json.loads(made.stdout)["client_id"]
        app.link = f"{base}/oauth2/authorize?" + urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": f"{app.origin}/cb",
                "scope": "openid email",
                "state": "xyz-state",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                "code_challenge_method": "S256",
            }
        )
        registered = httpx.post(
            f"{base}/api/auth/register",
            json={"email": EMAIL, "username": "ada", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text

        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
            context = browser.new_context(viewport={"width": 1100, "height": 800})
            page = context.new_page()
            me = Person(page, base, data_dir / "mail")
            page.goto(me.link_from_mail("verify-email", set()))
            me.press("Confirm my email address")
            page.goto(f"{base}/login")
            page.fill("#login", "ada")
            page.fill("#password", PASSWORD)
            me.press("Sign in")
            assert me.heading() == "My account"

            page.goto(app.origin)
            page.click("#sign-in")  # a cross-site navigation: no Strict cookie goes with it
            page.wait_for_selector("text=asks to")
            assert me.heading() == "Allow Wiki?", page.inner_text("main")
            assert "See your email address" in page.inner_text("main")
            me.press("Allow")
            page.wait_for_url(f"{app.origin}/cb?*")
            browser.close()
        assert len(app.received) == 1
        got = app.received[0]
        assert got["state"] == "xyz-state" and got["code"] and got["iss"] == base
        assert me.csp_violations == []
