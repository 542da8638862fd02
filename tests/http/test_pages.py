"""The pages' guards through the real ASGI app (the flows themselves run in a real browser:
tests/browser/). A form post is refused without its CSRF token or from another origin, and
then changes nothing; every page carries the strict CSP; PAGES_ENABLED=false removes them."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from interfaces.container import Container, build
from interfaces.http.app import create_app
from interfaces.pages.guard import CONTENT_SECURITY_POLICY
from interfaces.settings import load_settings
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FAST_ARGON2, FakeClock, event_count, run_projections
from tests.http.test_api import register_and_verify
from tests.http.test_passkeys_api import ORIGIN, with_passkey

Client = TestClient[Any]
PAGES = ["/login", "/register", "/forgot-password", "/verify-email?token=x", "/reset-password"]


def pages_container(tmp_path: Path, clock: FakeClock, **environ: str) -> Container:
    return build(
        load_settings({"DATA_DIR": str(tmp_path / "var"), **FAST_ARGON2, **environ}), clock=clock
    )


@pytest.fixture
def site(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Client, Container]]:
    container = pages_container(tmp_path, clock)
    # As `tessera serve` runs on the embedded default: the projections and the mail worker in
    # this process, so a page that waits for its reader's own writes (the account page) is
    # answered when they are applied, not at the end of the wait's bound.
    with TestClient(create_app(container)) as client:
        client.follow_redirects = False
        yield client, container
    container.close()


def test_a_second_lifespan_of_the_app_runs_no_projection_twice(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Two ASGI clients of one app (schemathesis' and a test's, or a server starting it twice)
    each run its startup: the projections and the mail worker must still run once."""

    def projecting() -> list[str]:
        return sorted(t.name for t in threading.enumerate() if t.name.startswith("projector-"))

    container = pages_container(tmp_path, clock)
    app = create_app(container)
    with TestClient(app):
        once = projecting()
        assert len(once) == len(container.projectors) > 0
        with TestClient(app):
            assert projecting() == once
    container.close()


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(client: Client) -> str:
    token = csrf_token(client.get("/login").text)
    answer = client.post("/login", data={"csrf_token": token, "login": "ada", "password": PASSWORD})
    assert answer.status_code == 303 and answer.headers["location"] == "/account", answer.text
    return csrf_token(client.get("/account").text)


def test_every_page_has_the_strict_policy_and_no_cache(site: tuple[Client, Container]) -> None:
    client, _ = site
    cookie = client.get("/login").headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    # PUBLIC_URL is plain-HTTP 127.0.0.1 here: the one case where the cookie is not Secure.
    assert "Secure" not in cookie
    for path in [*PAGES, "/static/tessera.css", "/static/tessera.js"]:
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
    page = client.get("/login")
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and "style=" not in page.text


def test_every_page_links_an_icon_and_favicon_ico_answers(site: tuple[Client, Container]) -> None:
    client, _ = site
    refused = client.post("/account/profile", data={"display_name": "x"})  # the error page
    for answer in [*(client.get(path) for path in PAGES), refused]:
        assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in answer.text
    linked = client.get("/static/favicon.svg")
    unasked = client.get("/favicon.ico")  # where a browser looks when no page named one
    for answer in (linked, unasked):
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("image/svg+xml")
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert answer.headers["cache-control"] == "no-cache"
        assert answer.content.startswith(b"<svg ")
    assert unasked.content == linked.content


def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    register_and_verify(client, container)
    before = event_count(container)
    form = {"login": "ada", "password": PASSWORD}
    assert client.post("/login", data=form).status_code == 403
    assert client.post("/login", data={**form, "csrf_token": "0" * 64}).status_code == 403
    assert event_count(container) == before  # no session started, no failure counted

    token = sign_in(client)
    before = event_count(container)
    assert client.post("/account/profile", data={"display_name": "Mallory"}).status_code == 403
    refused = client.post(
        "/account/profile",
        data={"display_name": "Mallory", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status_code == 403
    assert event_count(container) == before
    saved = client.post("/account/profile", data={"display_name": "Ada", "csrf_token": token})
    assert saved.status_code == 303
    assert 'value="Ada"' in client.get("/account").text


def test_a_token_of_one_browser_is_useless_in_another(site: tuple[Client, Container]) -> None:
    client, container = site
    register_and_verify(client, container)
    token = sign_in(client)
    mine = dict(client.cookies)
    client.cookies.clear()  # another browser: its own nonce cookie, no session
    client.get("/login")
    answer = client.post("/logout", data={"csrf_token": token, "everywhere": "yes"})
    assert answer.status_code == 403
    client.cookies.clear()
    client.cookies.update(mine)
    assert client.get("/account").status_code == 200


IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def test_my_sessions_are_named_in_words(site: tuple[Client, Container]) -> None:
    client, container = site
    register_and_verify(client, container)
    client.headers["User-Agent"] = IPHONE
    sign_in(client)
    client.post(
        "/api/auth/login",
        json={"login": "ada", "password": PASSWORD},
        headers={"User-Agent": "Phone/1.0 <i>hi</i>"},
    )
    run_projections(container)
    page = client.get("/account").text
    assert "<strong>Mobile Safari 17 on iPhone</strong> (this browser)" in page
    assert "AppleWebKit" not in page
    # A header the parser does not know: an unknown device, and what it sent, escaped.
    assert "<strong>Unknown device</strong>" in page
    assert "“Phone/1.0 &lt;i&gt;hi&lt;/i&gt;”" in page and "<i>hi" not in page


def test_the_mail_link_page_spends_nothing_until_its_form_is_posted(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    from tests.application.test_use_cases import mailed_token

    client.post(
        "/api/auth/register",
        json={"email": "bob@example.com", "username": "bob", "password": PASSWORD},
    )
    token = mailed_token(container, "bob@example.com")
    before = event_count(container)
    page = client.get(f"/verify-email?token={token}")
    assert page.status_code == 200 and f'value="{token}"' in page.text
    assert event_count(container) == before
    posted = client.post(
        "/verify-email", data={"csrf_token": csrf_token(page.text), "token": token}
    )
    assert posted.status_code == 303 and posted.headers["location"] == "/login?done=verified"
    assert token not in posted.headers["location"]
    assert event_count(container) > before


def test_signing_out_everywhere_ends_the_page_session(site: tuple[Client, Container]) -> None:
    client, container = site
    register_and_verify(client, container)
    token = sign_in(client)
    out = client.post("/logout", data={"csrf_token": token, "everywhere": "yes"})
    assert out.status_code == 303 and out.headers["location"] == "/login?done=signed-out"
    assert client.get("/account").headers.get("location") == "/login?next=/account"


def test_two_tabs_renewing_one_page_session_at_once_both_stay_signed_in(
    site: tuple[Client, Container], clock: FakeClock
) -> None:
    """Both tabs send the same expired access cookie and the same refresh cookie: the second
    renewal, within REFRESH_REUSE_INTERVAL, gets what the first got instead of ending the
    session (the same rule as the API's refresh)."""
    client, container = site
    register_and_verify(client, container)
    sign_in(client)
    clock.advance(seconds=container.settings.access_token_ttl + 1)
    both_tabs = dict(client.cookies)

    def renewed_refresh_cookie(tab: int) -> str:
        client.cookies.clear()
        client.cookies.update(both_tabs)  # each tab with the cookies from before
        page = client.get("/account")
        assert page.status_code == 200, (tab, page.headers.get("location"))
        cookies = [c for c in page.headers.get_list("set-cookie") if "tessera-refresh=" in c]
        assert len(cookies) == 1, cookies
        return cookies[0].split(";")[0].split("=", 1)[1]

    first, second = renewed_refresh_cookie(1), renewed_refresh_cookie(2)
    assert first and first != both_tabs["tessera-refresh"]
    assert second == first, "both tabs on one chain"


def test_pages_disabled_means_no_page_routes(tmp_path: Path, clock: FakeClock) -> None:
    container = pages_container(tmp_path, clock, PAGES_ENABLED="false")
    try:
        with TestClient(create_app(container, run_background=False)) as client:
            for path in [*PAGES, "/account", "/static/tessera.css"]:
                assert client.get(path).status_code == 404, path
            assert client.post("/login", data={"login": "x"}).status_code in (404, 405, 415)
            assert client.get("/health/live").status_code == 200
            # People sign in on the pages: without them discovery names no sign-in or sign-out
            # endpoint, and only the machine grant.
            for path in ("/oauth2/authorize?client_id=x", "/oauth2/logout"):
                assert client.get(path).status_code == 404, path
            meta = client.get("/.well-known/openid-configuration").json()
            assert "authorization_endpoint" not in meta
            assert "end_session_endpoint" not in meta
            assert meta["grant_types_supported"] == ["client_credentials"]
    finally:
        container.close()


@pytest.mark.parametrize(
    ("going", "lands"),
    [
        ("/oauth2/authorize?request=abc", "/oauth2/authorize?request=abc"),
        ("https://evil.example/", "/account"),
        ("//evil.example/", "/account"),
        (None, "/account"),
    ],
)
def test_a_passkey_sign_in_goes_where_the_sign_in_was_going_on_this_site_only(
    site: tuple[Client, Container], going: str | None, lands: str
) -> None:
    """An app's authorization request sends the person to sign in; a passkey brings them back
    to it, as the password does (found by mod_auth_openidc: the passkey led to my account)."""
    client, container = site
    _, _, device = with_passkey(client, container)
    token = csrf_token(client.get("/login", params={"next": going} if going else None).text)
    headers = {"X-CSRF-Token": token, "Origin": ORIGIN}
    options = client.post("/login/passkey/options", headers=headers, json={})
    assert options.status_code == 200, options.text
    offered = options.json()
    signed_in = client.post(
        "/login/passkey",
        headers=headers,
        json={"credential": device.get(offered.get("options", offered)), "next": going},
    )
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json() == {"next": lands}


def test_a_passkey_sign_in_ends_the_session_this_browser_had(
    site: tuple[Client, Container],
) -> None:
    """Asked to sign in again (an app's prompt=login), a person who uses a passkey replaces the
    browser's session as the password does: one browser, one session."""
    client, container = site
    _, _, device = with_passkey(client, container)
    sign_in(client)
    had = client.cookies.get("tessera-refresh")
    assert had
    token = csrf_token(client.get("/login", params={"again": "1"}).text)
    headers = {"X-CSRF-Token": token, "Origin": ORIGIN}
    offered = client.post("/login/passkey/options", headers=headers, json={}).json()
    signed_in = client.post(
        "/login/passkey",
        headers=headers,
        json={"credential": device.get(offered.get("options", offered))},
    )
    assert signed_in.status_code == 200, signed_in.text
    assert client.cookies.get("tessera-refresh") not in (None, had)
    old = client.post("/api/auth/refresh", json={"refresh_token": had})
    assert old.status_code == 401, old.text
