"""Signing in with another identity provider from the pages, and linking or unlinking one from
My account, against a real OpenID Provider (tests/oidc/harness.py) through the real ASGI app on
the embedded default. Also the MFA path after a provider sign-in, on the pages and in the API,
and OIDC_<NAME>_TRUST_MFA with the provider's amr.

The browser's SameSite rules are played by hand: the arrival at /login/oidc ends a redirect
chain that began at the provider (cross-site), so it carries none of the Strict cookies (the
page session, the CSRF nonce); the Lax flow cookie `tessera-oidc` reaches the API's callback."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from litestar.testing import TestClient

from interfaces.container import Container, build
from interfaces.http.app import create_app
from interfaces.settings import load_settings
from tests.conftest import FAST_ARGON2, FakeClock, event_count
from tests.http.test_api import PASSWORD, enable_mfa, register_and_verify
from tests.http.test_pages import csrf_token
from tests.oidc.harness import OidcProvider, sign_in

Client = TestClient[Any]
PUBLIC_URL = "http://127.0.0.1:8000"
PAGES_URI = f"{PUBLIC_URL}/login/oidc"  # on the allow-list by itself: the pages are on
APP = "http://127.0.0.1:9999/signed-in"  # an API client's redirect URI, listed
CLIENT_SECRET = "idp-client-secret"
STRICT = ("tessera-access", "tessera-refresh", "tessera-csrf")
ACCOUNTS = {
    "alice-sub": {"email": "alice@example.com", "email_verified": True, "name": "Alice Liddell"},
    "ada-at-idp": {"email": "ada@example.com", "email_verified": True},
    "bob-sub": {"email": "bob@example.com", "email_verified": True},
}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    client = {
        "client_id": "tessera-idp",
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{PUBLIC_URL}/api/auth/oidc/idp/callback"],
    }
    with OidcProvider(clients=[client], accounts=ACCOUNTS) as running:
        yield running


@contextmanager
def running_site(
    tmp_path: Path, clock: FakeClock, idp: OidcProvider, **extra: str
) -> Iterator[tuple[Client, Container]]:
    environ = {
        "DATA_DIR": str(tmp_path / "var"),
        **FAST_ARGON2,
        "OIDC_PROVIDERS": "idp",
        "OIDC_REDIRECT_URIS": APP,
        "OIDC_IDP_ISSUER": idp.issuer,
        "OIDC_IDP_CLIENT_ID": "tessera-idp",
        "OIDC_IDP_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_IDP_LABEL": "Test IdP",
        **extra,
    }
    container = build(load_settings(environ), clock=clock)
    try:
        # As `tessera serve` runs: the account page waits for its reader's own writes.
        with TestClient(create_app(container)) as client:
            client.follow_redirects = False
            yield client, container
    finally:
        container.close()


@pytest.fixture
def site(tmp_path: Path, clock: FakeClock, idp: OidcProvider) -> Iterator[tuple[Client, Container]]:
    with running_site(tmp_path, clock, idp) as running:
        yield running


def local(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL, url
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def cross_site_get(client: Client, url: str) -> httpx.Response:
    """A GET at the end of a cross-site redirect chain: the Strict cookies stay home. The ones
    the answer sets are kept, the others come back for the next, same-site, request."""
    kept = [cookie for cookie in client.cookies.jar if cookie.name in STRICT]
    for cookie in kept:
        client.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)
    answer = client.get(local(url))
    present = {cookie.name for cookie in client.cookies.jar}
    for cookie in kept:
        if cookie.name not in present:
            client.cookies.jar.set_cookie(cookie)
    return answer


def button_href(page: str, label: str) -> str:
    match = re.search(rf'<a class="button" href="([^"]+)"[^>]*>{re.escape(label)}</a>', page)
    assert match, page
    return html.unescape(match.group(1))


def through_provider(
    client: Client, authorize_url: str, subject: str, **options: Any
) -> httpx.Response:
    """The provider's sign-in, its redirect to the API's callback (the Lax flow cookie goes
    along), and the callback's redirect to the pages: where the browser lands."""
    callback = sign_in(authorize_url, subject, **options)
    assert "tessera-oidc" in client.cookies
    back = client.get(local(callback))
    assert back.status_code == 303, back.text
    assert back.headers["location"].startswith(PAGES_URI + "?")
    return cross_site_get(client, back.headers["location"])


def provider_sign_in(client: Client, subject: str, **options: Any) -> httpx.Response:
    """From the sign-in page's button to the page that finishes the sign-in."""
    start = client.get(button_href(client.get("/login").text, "Sign in with Test IdP"))
    assert start.status_code == 302, start.text
    return through_provider(client, start.headers["location"], subject, **options)


def finish(client: Client, page: httpx.Response) -> httpx.Response:
    assert page.status_code == 200, page.text
    code = re.search(r'name="code" value="([^"]+)"', page.text)
    assert code and 'action="/login/oidc"' in page.text
    return client.post(
        "/login/oidc", data={"csrf_token": csrf_token(page.text), "code": code.group(1)}
    )


def test_the_first_sign_in_through_the_page_makes_an_account_and_lands_on_my_account(
    site: tuple[Client, Container],
) -> None:
    client, _ = site
    href = button_href(client.get("/login").text, "Sign in with Test IdP")
    assert urlsplit(href).path == "/api/auth/oidc/idp/start"
    assert parse_qs(urlsplit(href).query) == {"redirect_uri": [PAGES_URI]}

    page = provider_sign_in(client, "alice-sub")
    assert "tessera-access" not in client.cookies
    # The GET spent nothing: the code is in the form, and good when posted back.
    done = finish(client, page)
    assert (done.status_code, done.headers["location"]) == (303, "/account")
    account = client.get("/account")
    assert account.status_code == 200, account.text
    assert "alice@example.com" in account.text
    assert "Test IdP" in account.text and "Unlink" in account.text
    assert "Link Test IdP" not in account.text  # linked already

    # Signed in already, this browser signs in again: the page it lands on came without the
    # session's cookies, and its form is good all the same once the post brings them.
    # (Signed in, /login sends it on to /account: the button's link, as another tab held it.)
    start = client.get(href)
    again = finish(client, through_provider(client, start.headers["location"], "alice-sub"))
    assert (again.status_code, again.headers["location"]) == (303, "/account")
    assert client.get("/account").status_code == 200

    # An unknown (or spent) code: the sign-in page says so.
    replay = finish(client, cross_site_get(client, f"{PAGES_URI}?code={'x' * 43}"))
    assert replay.status_code == 400 and "sign-in code is unknown" in replay.text


def test_the_landing_page_wants_its_own_csrf_token(site: tuple[Client, Container]) -> None:
    client, container = site
    page = provider_sign_in(client, "alice-sub")
    code = re.search(r'name="code" value="([^"]+)"', page.text)
    assert code
    before = event_count(container)
    forged = client.post("/login/oidc", data={"csrf_token": "0" * 64, "code": code.group(1)})
    assert forged.status_code == 403
    assert event_count(container) == before


def test_refusals_at_the_provider_or_the_callback_show_on_the_sign_in_page(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    before = event_count(container)
    declined = provider_sign_in(client, "alice-sub", approve=False)
    assert declined.status_code == 400
    assert "You cancelled the sign-in" in declined.text
    assert "Sign in with Test IdP" in declined.text  # the buttons, to try again
    assert event_count(container) == before

    register_and_verify(client, container, "ada")  # ada@example.com, with a password
    collided = provider_sign_in(client, "ada-at-idp")
    assert collided.status_code == 400
    assert "An account already uses this email address" in collided.text


def test_an_api_client_still_gets_problems_from_the_callback(
    site: tuple[Client, Container],
) -> None:
    client, _ = site
    started = client.get("/api/auth/oidc/idp/start", params={"redirect_uri": APP})
    refused = client.get(local(sign_in(started.headers["location"], "x", approve=False)))
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_identity_response")


def api_exchange(client: Client, subject: str, **options: Any) -> dict[str, Any]:
    started = client.get("/api/auth/oidc/idp/start", params={"redirect_uri": APP})
    back = client.get(local(sign_in(started.headers["location"], subject, **options)))
    assert back.status_code == 303, back.text
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
    exchanged = client.post("/api/auth/oidc/exchange", json={"code": code})
    assert exchanged.status_code == 200, exchanged.text
    return dict(exchanged.json())


def test_mfa_after_a_provider_sign_in_on_the_page_and_in_the_api(
    site: tuple[Client, Container], clock: FakeClock
) -> None:
    client, _ = site
    tokens = api_exchange(client, "bob-sub")
    totp = enable_mfa(client, tokens, clock)

    # The API: the exchange answers a challenge, /api/auth/login/mfa completes it.
    challenge = api_exchange(client, "bob-sub")
    assert challenge["mfa_required"] is True and "access_token" not in challenge
    done = client.post(
        "/api/auth/login/mfa",
        json={"mfa_token": challenge["mfa_token"], "code": totp.at(clock.now().timestamp())},
    )
    assert done.status_code == 200 and done.json()["access_token"], done.text

    # The pages: the post of the code asks for the second step, which signs the page in.
    clock.advance(seconds=30)
    asked = finish(client, provider_sign_in(client, "bob-sub", amr=["mfa"]))
    assert asked.status_code == 200 and 'action="/login/mfa"' in asked.text
    assert "tessera-access" not in client.cookies
    token = re.search(r'name="mfa_token" value="([^"]+)"', asked.text)
    assert token
    second = client.post(
        "/login/mfa",
        data={
            "csrf_token": csrf_token(asked.text),
            "mfa_token": token.group(1),
            "code": totp.at(clock.now().timestamp()),
        },
    )
    assert (second.status_code, second.headers["location"]) == (303, "/account")
    assert "bob@example.com" in client.get("/account").text


def test_a_trusted_provider_multi_factor_sign_in_skips_the_second_step(
    tmp_path: Path, clock: FakeClock, idp: OidcProvider
) -> None:
    with running_site(tmp_path, clock, idp, OIDC_IDP_TRUST_MFA="true") as (client, _):
        enable_mfa(client, api_exchange(client, "bob-sub"), clock)
        # A one-factor sign-in at the provider: tessera's own second step still applies.
        assert api_exchange(client, "bob-sub", amr=["pwd"])["mfa_required"] is True
        trusted = api_exchange(client, "bob-sub", amr=["pwd", "otp", "mfa"])
        assert trusted.get("access_token") and "mfa_required" not in trusted

        signed_in = finish(client, provider_sign_in(client, "bob-sub", amr=["mfa"]))
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/account")
        assert "bob@example.com" in client.get("/account").text


def test_linking_and_unlinking_from_my_account(site: tuple[Client, Container]) -> None:
    client, container = site
    register_and_verify(client, container, "ada")  # ada@example.com, with a password
    login = client.post(
        "/login",
        data={
            "csrf_token": csrf_token(client.get("/login").text),
            "login": "ada",
            "password": PASSWORD,
        },
    )
    assert login.status_code == 303
    account = client.get("/account").text
    assert "None linked yet." in account and "Link Test IdP" in account

    # Re-authenticated: without the password, or with a wrong one, nothing starts.
    for given, code in (("", "401"), ("not my password", "403")):
        refused = client.post(
            "/account/identities/link",
            data={"csrf_token": csrf_token(account), "provider": "idp", "password": given},
        )
        assert str(refused.status_code) == code, refused.text
        assert "tessera-oidc" not in refused.cookies

    # The link starts from a post with the page session and the password; the answer leads
    # to the provider.
    leave = client.post(
        "/account/identities/link",
        data={"csrf_token": csrf_token(account), "provider": "idp", "password": PASSWORD},
    )
    assert leave.status_code == 200, leave.text
    assert "tessera-oidc" in leave.cookies
    authorize = button_href(leave.text, "Continue to Test IdP")
    assert authorize.startswith(idp_issuer(container))
    linked = through_provider(client, authorize, "ada-at-idp")
    assert linked.status_code == 200 and "Test IdP is linked" in linked.text
    account = client.get("/account").text
    assert "ada@example.com" in account and "Link Test IdP" not in account

    # Not without the page's own token, nor for a provider that is not configured.
    assert client.post("/account/identities/link", data={"provider": "idp"}).status_code == 403
    unknown = client.post(
        "/account/identities/link",
        data={"csrf_token": csrf_token(account), "provider": "nope", "password": PASSWORD},
    )
    assert unknown.status_code == 404 and "No identity provider of this name" in unknown.text

    identity = re.search(r'name="identity_id" value="([^"]+)"', account)
    assert identity
    unlinked = client.post(
        "/account/identities/unlink",
        data={
            "csrf_token": csrf_token(account),
            "identity_id": identity.group(1),
            "password": PASSWORD,
        },
    )
    assert unlinked.headers["location"] == "/account?done=identity-unlinked"
    assert "Link Test IdP" in client.get("/account").text


def test_the_last_way_in_is_not_unlinked(site: tuple[Client, Container]) -> None:
    client, _ = site
    finish(client, provider_sign_in(client, "alice-sub"))  # an account with no password
    account = client.get("/account").text
    identity = re.search(r'name="identity_id" value="([^"]+)"', account)
    assert identity
    refused = client.post(
        "/account/identities/unlink",
        data={"csrf_token": csrf_token(account), "identity_id": identity.group(1)},
    )
    assert refused.status_code == 409
    assert "This is your only way to sign in" in refused.text


def idp_issuer(container: Container) -> str:
    return container.settings.oidc_provider_values["OIDC_IDP_ISSUER"]


def test_a_code_planted_in_another_browser_signs_nobody_in(
    site: tuple[Client, Container],
) -> None:
    """Login CSRF: an attacker signs in at the provider as themselves and sends the link to
    the page that finishes it (its form posts itself) to a victim. The victim's browser does
    not hold the cookie of the browser that started, so nobody is signed in, and the code is
    spent for the attacker too."""
    attacker, container = site
    planted = provider_sign_in(attacker, "alice-sub")
    code = re.search(r'name="code" value="([^"]+)"', planted.text)
    assert code
    link = f"{PAGES_URI}?code={code.group(1)}"

    victim = TestClient(attacker.app)
    victim.follow_redirects = False
    victim.get("/login")  # a browser of its own, with its own cookies, none of the flow's
    assert "tessera-oidc" not in victim.cookies
    before = event_count(container)
    refused = finish(victim, cross_site_get(victim, link))
    assert refused.status_code == 400 and "sign-in code is unknown" in refused.text
    assert "tessera-access" not in victim.cookies
    assert victim.get("/account").status_code == 303  # to /login: signed in as nobody
    assert event_count(container) == before  # no account made, no session started

    # Even a browser that started a sign-in of its own (and so holds a flow cookie) is not
    # the one this code belongs to.
    victim.get(button_href(victim.get("/login").text, "Sign in with Test IdP"))
    assert "tessera-oidc" in victim.cookies
    other = provider_sign_in(attacker, "alice-sub")
    code = re.search(r'name="code" value="([^"]+)"', other.text)
    assert code
    refused = finish(victim, cross_site_get(victim, f"{PAGES_URI}?code={code.group(1)}"))
    assert refused.status_code == 400 and "tessera-access" not in victim.cookies

    # The code was spent by the refused attempt: its own browser cannot use it afterwards.
    late = finish(attacker, other)
    assert late.status_code == 400 and "tessera-access" not in attacker.cookies
