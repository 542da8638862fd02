"""Relying parties nobody here wrote sign people in through tessera, on the embedded default and
on PostgreSQL + Redis (`serve`, `projector`, `worker`):

- panva's openid-client (npm, Node.js) as a web app's back end: discovery, the code flow with
  PKCE, the ID token checked, userinfo, refresh, introspection, revocation, client_credentials,
  and the RP-initiated logout URL, followed by the browser;
- Apache's mod_auth_openidc (Debian's package) protecting a page: Chromium signs in with a
  password and consents, sees the claims, signs out through tessera, and signs in again with a
  passkey;
- oidc-client-ts in a single-page app on another origin: the code flow with PKCE, userinfo
  across origins (CORS), and signing out;
- and the docs' Python API (examples/api.py) checking access tokens offline and by
  introspection.

Each deployment, the browser, Apache and the app are started once for the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.browser.harness import virtual_authenticator
from tests.browser.test_pages_in_browser import browser
from tests.relying_party.apache import Apache, apache_site, ensure_apache, site_config
from tests.relying_party.examples.api import AccessTokens
from tests.relying_party.harness import run_web_client
from tests.relying_party.provider import Provider, consent, deployed, sign_in_and_consent
from tests.relying_party.spa import SinglePageApp, single_page_app
from tests.servers import RedisServer, free_port

__all__ = ["browser"]  # the pages' tests' Chromium, as a fixture of this module too

API = "https://notes.example/"


@pytest.fixture(scope="module", params=["sqlite", "postgres+redis"])
def provider(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provider]:
    stores = None
    if request.param == "postgres+redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        stores = {
            "DATABASE_URL": request.getfixturevalue("postgres").new_database(),
            "REDIS_URL": redis.url,
        }
    with deployed(tmp_path_factory.mktemp("provider"), stores) as made:
        yield made


@pytest.fixture(scope="module")
def wiki(provider: Provider) -> Iterator[Apache]:
    """Apache with mod_auth_openidc, configured as the docs show, registered as a client."""
    ensure_apache()
    port = free_port()
    base = f"http://127.0.0.1:{port}"  # a loopback redirect URI: an IP address (RFC 8252 8.3)
    registered = provider.client(
        "Wiki",
        redirect_uris=[f"{base}/protected/redirect_uri"],
        post_logout_redirect_uris=[f"{base}/signed-out.html"],
    )
    config = site_config(base, provider.base, registered["client_id"], registered["client_secret"])
    with apache_site(base, port, config) as apache:
        yield apache


@pytest.fixture(scope="module")
def notes(provider: Provider) -> Iterator[SinglePageApp]:
    """The single-page app on its own origin, registered as a public client."""
    with single_page_app(provider.base, free_port()) as app:
        registered = provider.client(
            "Notes",
            public=True,
            redirect_uris=[app.redirect_uri],
            post_logout_redirect_uris=[app.post_logout_redirect_uri],
        )
        app.client_id = registered["client_id"]
        yield app


def signed_out_of_tessera(context: Any, provider: Provider) -> bool:
    """The pages' session of this browser is over: my account sends it to sign in."""
    answer = context.request.get(f"{provider.base}/account", max_redirects=0)
    return bool(answer.status == 303 and "/login" in answer.headers["location"])


def test_openid_client_signs_a_person_in_refreshes_and_signs_out(
    provider: Provider, browser: Any
) -> None:
    origin = f"http://127.0.0.1:{free_port()}"  # nothing listens: the browser's visits are caught
    registered = provider.client(
        "Web app",
        redirect_uris=[f"{origin}/callback"],
        post_logout_redirect_uris=[f"{origin}/signed-out"],
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
        scopes=["openid", "profile", "email", "offline_access", "notes:read"],
    )
    login, password = provider.person()
    context = browser.new_context()
    came_back: list[str] = []

    def caught(route: Any) -> None:
        came_back.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="back at the app")

    context.route(f"{origin}/**", caught)
    page = context.new_page()

    def browser_step(authorization_url: str) -> str:
        asked = parse_qs(urlsplit(authorization_url).query)
        assert asked["code_challenge_method"] == ["S256"] and asked["response_type"] == ["code"]
        page.goto(authorization_url)
        assert sign_in_and_consent(page, login, password)  # not trusted: tessera asks
        page.wait_for_url(f"{origin}/callback?**")
        return came_back[-1]

    got = run_web_client(
        browser_step,
        issuer=provider.base,
        clientId=registered["client_id"],
        clientSecret=registered["client_secret"],
        redirectUri=f"{origin}/callback",
        postLogoutRedirectUri=f"{origin}/signed-out",
        machineScope="notes:read",
    )
    claims = got["claims"]
    assert claims["iss"] == provider.base and claims["aud"] == registered["client_id"]
    assert claims["email"] == login and claims["email_verified"] is True
    assert {"auth_time", "sid", "at_hash", "nonce"} <= claims.keys()
    assert claims["amr"] == ["pwd"], claims
    assert got["userinfo"]["sub"] == claims["sub"] and got["userinfo"]["email"] == login
    tokens, refreshed = got["tokens"], got["refreshed"]
    assert set(tokens["scope"].split()) >= {"openid", "offline_access"}
    assert refreshed["refresh_token"] != tokens["refresh_token"]  # rotated
    assert got["active"]["active"] is True
    assert got["active"]["client_id"] == registered["client_id"]
    assert got["revoked"] == {"active": False}
    assert got["afterRevocation"]["error"] == "invalid_grant"
    assert got["machine"]["scope"] == "notes:read"
    # A code is single use: a second exchange is refused and ends what the first one issued.
    assert got["codeAgain"]["error"] == "invalid_grant"
    assert got["afterCodeAgain"] == {"active": False}
    # An API checks the person's access token offline, as the docs' example does.
    # Asked for no resource: for tessera's userinfo.
    userinfo = got["metadata"]["userinfo_endpoint"]
    person = AccessTokens(provider.base, userinfo).claims(tokens["access_token"])
    assert person["sub"] == claims["sub"] and person["client_id"] == registered["client_id"]
    # Never a session of tessera's own API.
    me = httpx.get(
        f"{provider.base}/api/users/me",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert me.status_code == 401

    # RP-initiated logout: a valid id_token_hint, a registered URI: signed out, and sent back.
    page.goto(got["endSessionUrl"])
    page.wait_for_url(f"{origin}/signed-out?**")
    assert parse_qs(urlsplit(came_back[-1]).query)["state"] == ["after-logout"]
    assert signed_out_of_tessera(context, provider)
    context.close()


def test_apache_sends_the_browser_to_tessera_with_pkce(provider: Provider, wiki: Apache) -> None:
    answer = httpx.get(f"{wiki.base}/protected/claims.shtml")
    assert answer.status_code == 302, wiki.error_log()
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        f"{provider.base}/oauth2/authorize"
    )
    asked = parse_qs(location.query)
    assert asked["response_type"] == ["code"]
    assert asked["redirect_uri"] == [wiki.redirect_uri]
    assert asked["code_challenge_method"] == ["S256"] and asked["code_challenge"]
    assert asked["state"] and asked["nonce"]
    assert set(asked["scope"][0].split()) == {"openid", "email", "profile"}


def test_apache_signs_in_with_a_password_then_a_passkey_and_out_through_tessera(
    provider: Provider, wiki: Apache, browser: Any
) -> None:
    login, password = provider.person()
    context = browser.new_context()
    protected = f"{wiki.base}/protected/claims.shtml"

    page = context.new_page()
    page.goto(protected)
    assert page.url.startswith(f"{provider.base}/")  # tessera's sign-in
    assert sign_in_and_consent(page, login, password)  # not trusted: tessera asks
    page.wait_for_url(protected)
    assert page.inner_text("#email") == login, wiki.error_log()
    assert page.inner_text("#iss") == provider.base
    assert page.inner_text("#amr") == "pwd"  # mod_auth_openidc joins a list with commas
    assert page.inner_text("#acr") == "urn:tessera:acr:password"

    # A passkey, made on my account by the browser's virtual authenticator.
    virtual_authenticator(context, page)
    page.goto(f"{provider.base}/account")
    page.fill("#passkey-name", "Laptop")
    page.fill("#passkey-add-password", password)
    page.click("#passkey-add")
    page.locator("[data-passkey-list]").get_by_text("Laptop").wait_for()

    # Out through tessera: mod_auth_openidc ends its session and sends the ID token as hint.
    page.goto(wiki.logout_url())
    page.wait_for_url(wiki.signed_out)
    assert page.inner_text("h1") == "Signed out"
    assert signed_out_of_tessera(context, provider)

    # In again, with the passkey alone.
    page.goto(protected)
    assert page.url.startswith(f"{provider.base}/")
    page.click("#passkey-sign-in")
    page.wait_for_url(lambda url: not url.startswith(f"{provider.base}/login"))
    if page.url != protected:
        consent(page)  # the consent page, if tessera asks again
    page.wait_for_url(protected)
    assert page.inner_text("#email") == login
    assert "hwk" in page.inner_text("#amr").split(","), page.inner_text("#amr")
    assert page.inner_text("#acr") == "urn:tessera:acr:mfa"  # a passkey: possession and a PIN
    context.close()


def test_a_single_page_app_signs_in_calls_userinfo_across_origins_and_signs_out(
    provider: Provider, notes: SinglePageApp, browser: Any
) -> None:
    login, password = provider.person()
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def result() -> dict[str, Any]:
        page.wait_for_function("document.getElementById('result').textContent !== ''")
        shown: dict[str, Any] = json.loads(page.inner_text("#result"))
        return shown

    page.goto(f"{notes.origin}/")
    assert result() == {"ready": True, "user": False}, errors
    asked: list[str] = []
    page.on(
        "request",
        lambda sent: asked.append(sent.url) if "/oauth2/authorize?" in sent.url else None,
    )
    page.click("#sign-in")
    page.wait_for_url(f"{provider.base}/**")
    request = parse_qs(urlsplit(asked[0]).query)
    assert request["code_challenge_method"] == ["S256"] and request["response_type"] == ["code"]
    assert sign_in_and_consent(page, login, password)
    page.wait_for_url(f"{notes.origin}/")
    shown = result()
    assert shown.get("signedIn"), shown
    assert shown["profile"]["email"] == login
    assert shown["userinfo"]["status"] == 200
    assert shown["userinfo"]["claims"]["sub"] == shown["profile"]["sub"]

    page.click("#sign-out")
    page.wait_for_url(f"{notes.origin}/?signed-out")
    assert result() == {"signedOut": True}
    assert signed_out_of_tessera(context, provider)
    assert not errors, errors
    context.close()


def test_the_docs_api_checks_access_tokens_offline_and_by_introspection(
    provider: Provider,
) -> None:
    machine = provider.client(
        "Notes worker", grant_types=["client_credentials"], scopes=["notes:read"], resources=[API]
    )
    api = provider.client("Notes API", grant_types=["client_credentials"], scopes=[])

    def token(**resource: str) -> str:
        answer = httpx.post(
            f"{provider.base}/oauth2/token",
            data={"grant_type": "client_credentials", "scope": "notes:read", **resource},
            auth=(machine["client_id"], machine["client_secret"]),
        )
        assert answer.status_code == 200, answer.text
        issued: str = answer.json()["access_token"]
        return issued

    for_us, for_another = token(resource=API), token()
    notes_api = AccessTokens(provider.base, API)

    claims = notes_api.claims(for_us)
    assert claims["client_id"] == machine["client_id"] and claims["scope"] == "notes:read"
    with pytest.raises(jwt.InvalidAudienceError):
        notes_api.claims(for_another)  # the issuer's own audience, not this API
    head, body, signature = for_us.split(".")
    forged = f"{head}.{body}.{signature[:-4]}AAAA"
    with pytest.raises(jwt.InvalidSignatureError):
        notes_api.claims(forged)
    with pytest.raises(jwt.InvalidIssuerError):
        _elsewhere(notes_api, "https://evil.example").claims(for_us)

    # A session token of tessera's own API is not an access token for anyone else.
    login, password = provider.person()
    own = httpx.post(
        f"{provider.base}/api/auth/login", json={"login": login, "password": password}
    ).json()["access_token"]
    with pytest.raises(jwt.InvalidTokenError):
        notes_api.claims(own)

    # Introspection: active, for this API; one for another API is not taken; revoked: gone.
    secret = (api["client_id"], api["client_secret"])
    active = notes_api.active_claims(for_us, *secret)
    assert active is not None and active["sub"] == machine["client_id"]
    assert notes_api.active_claims(for_another, *secret) is None
    revoked = httpx.post(
        f"{provider.base}/oauth2/revoke",
        data={"token": for_us},
        auth=(machine["client_id"], machine["client_secret"]),
    )
    assert revoked.status_code == 200
    assert notes_api.active_claims(for_us, *secret) is None
    assert notes_api.claims(for_us)["jti"]  # offline it verifies until exp: the docs say so


def _elsewhere(checker: AccessTokens, issuer: str) -> AccessTokens:
    """The same API, expecting another issuer."""
    other = object.__new__(AccessTokens)
    other.__dict__.update(checker.__dict__, issuer=issuer)
    return other
