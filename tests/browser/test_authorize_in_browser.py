"""The authorization endpoint in a real browser, reached from an app on another site: the
page session's cookies are SameSite=Strict, so the app's link arrives without them; tessera's
same-site re-navigation brings them, and a signed-in person goes straight to the consent page
(not the sign-in page), allows the app, and the app's callback receives the code and state."""

from __future__ import annotations

from pathlib import Path

from tests.browser.other_site import App, signed_in_person
from tests.browser.test_pages_in_browser import serve


def test_an_app_on_another_site_reaches_the_consent_of_a_signed_in_person(
    tmp_path: Path, app: App
) -> None:
    for base, data_dir in serve(tmp_path):
        client_id = app.register(base, data_dir)
        app.link = app.authorize_link(base, client_id, "xyz-state")
        with signed_in_person(base, data_dir) as (_, me):
            me.page.goto(app.origin)
            me.page.click("#sign-in")  # a cross-site navigation: no Strict cookie goes with it
            me.page.wait_for_selector("text=asks to")
            assert me.heading() == "Allow Wiki?", me.page.inner_text("main")
            assert "See your email address" in me.page.inner_text("main")
            me.press("Allow")
            me.page.wait_for_url(f"{app.callback}?*")
        assert len(app.received) == 1
        got = app.received[0]
        assert got["state"] == "xyz-state" and got["code"] and got["iss"] == base
        assert me.csp_violations == []
