"""RP-Initiated Logout in a real browser, from an app on another site: the page session's
cookies are SameSite=Strict, so the app's link arrives without them; tessera's own page posts
the request again, same-site, with them. With the ID token the app got as its hint, the person
is signed out and back at the app's registered post_logout_redirect_uri with its state, without
a question; without a hint they are asked first, and stay signed in until they confirm."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.browser.other_site import VERIFIER, App, sign_in, signed_in_person
from tests.browser.test_pages_in_browser import serve


def signed_in(context: Any, base: str) -> bool:
    """Whether the browser's page session is live, asked from another tab."""
    other = context.new_page()
    other.goto(f"{base}/account")
    heading = other.inner_text("h1")
    other.close()
    return bool(heading == "My account")


def test_an_app_on_another_site_signs_the_person_out(tmp_path: Path, app: App) -> None:
    for base, data_dir in serve(tmp_path):
        callback = app.callback
        client_id = app.register(base, data_dir, "--post-logout-redirect-uri", callback)
        app.link = app.authorize_link(base, client_id, "sign-in")
        with signed_in_person(base, data_dir) as (context, me):
            page = me.page
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
        assert me.csp_violations == []
