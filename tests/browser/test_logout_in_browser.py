"""RP-Initiated Logout in a real browser, from an app on another site: the page session's
cookies are SameSite=Strict, so the app's link arrives without them; tessera's own page posts
the request again, same-site, with them. With the ID token the app got as its hint, the person
is signed out and back at the app's registered post_logout_redirect_uri with its state, without
a question; without a hint they are asked first, and stay signed in until they confirm."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser.harness import CHROMIUM_FLAGS, ensure_chromium
from tests.browser.test_authorize_in_browser import App, app  # noqa: F401 - the fixture
from tests.browser.test_pages_in_browser import EMAIL, PASSWORD, Person, serve
from tests.e2e.test_serve import tessera

playwright = pytest.importorskip("playwright.sync_api")
# RFC 7636, appendix B: this verifier's S256 challenge.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def sign_in(me: Person) -> None:
    me.page.goto(f"{me.base}/login")
    me.page.fill("#login", "ada")
    me.page.fill("#password", PASSWORD)
    me.press("Sign in")
    assert me.heading() == "My account"


def signed_in(context: Any, base: str) -> bool:
    """Whether the browser's page session is live, asked from another tab."""
    other = context.new_page()
    other.goto(f"{base}/account")
    heading = other.inner_text("h1")
    other.close()
    return bool(heading == "My account")


def test_an_app_on_another_site_signs_the_person_out(tmp_path: Path, app: App) -> None:  # noqa: F811
    executable = ensure_chromium()
    for base, data_dir in serve(tmp_path):
        env = {**os.environ, "DATA_DIR": str(data_dir), "PUBLIC_URL": base}
        for name in ("DATABASE_URL", "REDIS_URL", "LOG_FILE"):
            env.pop(name, None)
        callback = f"{app.origin}/cb"
        made = subprocess.run(
            [
                *(tessera(), "admin", "client", "create", "Wiki", "--public"),
                *("--redirect-uri", callback, "--post-logout-redirect-uri", callback),
                *("--scope", "openid", "--scope", "email"),
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
                "redirect_uri": callback,
                "scope": "openid email",
                "state": "sign-in",
                "code_challenge": CHALLENGE,
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

            sign_in(me)
            page.goto(app.origin)
            page.click("#sign-in")
            page.wait_for_selector("text=asks to")
            me.press("Allow")
            page.wait_for_url(f"{callback}?*")
            code = app.received[-1]["code"]
            tokens = httpx.post(
                f"{base}/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": callback,
                    "client_id": client_id,
                    "code_verifier": VERIFIER,
                },
            )
            assert tokens.status_code == 200, tokens.text
            id_token = tokens.json()["id_token"]

            # The app's sign-out link, with its ID token: signed out and back, no question.
            app.link = f"{base}/oauth2/logout?" + urlencode(
                {
                    "id_token_hint": id_token,
                    "post_logout_redirect_uri": callback,
                    "state": "signed-out-1",
                }
            )
            page.goto(app.origin)
            page.click("#sign-in")
            page.wait_for_url(f"{callback}?state=signed-out-1")
            assert not signed_in(context, base)

            # Without a hint: asked, still signed in until the person confirms.
            sign_in(me)
            app.link = f"{base}/oauth2/logout?" + urlencode(
                {"client_id": client_id, "post_logout_redirect_uri": callback, "state": "two"}
            )
            page.goto(app.origin)
            page.click("#sign-in")
            page.wait_for_selector("text=asks that you be signed out")
            assert me.heading() == "Sign out?"
            assert signed_in(context, base)
            me.press("Sign out")
            page.wait_for_url(f"{callback}?state=two")
            assert not signed_in(context, base)
            browser.close()
        assert me.csp_violations == []
