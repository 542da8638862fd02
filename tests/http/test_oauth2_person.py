"""The OpenID Provider's person side through the real app, on both stores: a browser signs in
on the pages, an app sends it to /oauth2/authorize, the person allows the app, the app
exchanges the code (PKCE S256) for an access token, an ID token and a refresh token, reads
userinfo, refreshes, and introspects. Each bad input of issue #22 is refused as RFC 6749 / OIDC
says, and the attacks it names (a replayed code, a stolen token used elsewhere, a hostile page
posting the consent form) get nothing."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import jwt
import pytest

from domain.client import SECRET_OVERLAP, ClientSettings
from interfaces.container import Container, build
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock
from tests.http.test_api import Client, bearer, log_in, register_and_verify
from tests.http.test_pages import csrf_token

CALLBACK = "https://wiki.example/callback"
WIKI = ClientSettings(
    name="Wiki",
    redirect_uris=(CALLBACK,),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "profile", "email", "offline_access"),
)
SPA = ClientSettings(
    name="Dashboard",
    redirect_uris=("https://dash.example/cb",),
    public=True,
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "email", "offline_access"),
)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def register(container: Container, settings: ClientSettings = WIKI) -> tuple[str, str | None]:
    issued = container.clients.register(settings, "test")
    return issued.client_id, issued.client_secret


def sign_in(client: Client, container: Container) -> None:
    """A person signed in on the pages (the browser holds the page session's cookies)."""
    client.follow_redirects = False
    register_and_verify(client, container)
    token = csrf_token(client.get("/login").text)
    answer = client.post("/login", data={"csrf_token": token, "login": "ada", "password": PASSWORD})
    assert answer.status_code == 303, answer.text


def authorize(client: Client, client_id: str, **params: str) -> Any:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": "openid email profile offline_access",
        "state": "s-123",
        "nonce": "n-456",
        **params,
    }
    return client.get("/oauth2/authorize", params={k: v for k, v in query.items() if v})


def destination(answer: Any) -> str:
    """Where an answer sends the browser: a redirect, or a page of ours that goes there."""
    if answer.status_code in (302, 303):
        return str(answer.headers["location"])
    assert answer.status_code == 200, answer.text
    found = re.search(r'href="([^"]+)" data-auto-follow', answer.text)
    assert found, answer.text
    return html.unescape(found.group(1))


def back_to_app(answer: Any) -> dict[str, str]:
    url = destination(answer)
    assert url.startswith(CALLBACK) or url.startswith("https://dash.example/cb"), url
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def allow(client: Client, consent_page: Any, decision: str = "allow") -> Any:
    assert consent_page.status_code == 200 and "asks to" in consent_page.text, consent_page.text
    request_id = re.search(r'name="request" value="([^"]+)"', consent_page.text)
    assert request_id
    return client.post(
        "/oauth2/authorize",
        data={
            "csrf_token": csrf_token(consent_page.text),
            "request": html.unescape(request_id.group(1)),
            "decision": decision,
        },
    )


def authorize_s256(client: Client, client_id: str, challenge: str, **params: str) -> Any:
    """An authorization request with its PKCE S256 challenge."""
    return authorize(
        client, client_id, code_challenge=challenge, code_challenge_method="S256", **params
    )


def code_for(client: Client, client_id: str, challenge: str, **params: str) -> str:
    """A code sent back to the app, the consent page allowed if it is shown."""
    first = authorize_s256(client, client_id, challenge, **params)
    answer = allow(client, first) if first.status_code == 200 and "asks to" in first.text else first
    got = back_to_app(answer)
    assert "code" in got, got
    return got["code"]


def exchange(
    client: Client, client_id: str, secret: str | None, code: str, verifier: str | None, **form: str
) -> Any:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, **form}
    if verifier is not None:
        data["code_verifier"] = verifier
    if secret is None:
        return client.post("/oauth2/token", data={**data, "client_id": client_id})
    return client.post("/oauth2/token", data=data, auth=(client_id, secret))


def app_tokens(client: Client, container: Container) -> tuple[str, str | None, dict[str, Any]]:
    """A person signed in, the app registered, and the tokens its code brought: the app's id,
    its secret and the token answer."""
    sign_in(client, container)
    client_id, secret = register(container)
    verifier, challenge = pkce()
    code = code_for(client, client_id, challenge)
    tokens = exchange(client, client_id, secret, code, verifier)
    assert tokens.status_code == 200, tokens.text
    return client_id, secret, tokens.json()


def sign_in_to_continue(client: Client, login_page: Any) -> Any:
    """Ada's password posted on the sign-in page, with where it says to go next."""
    next_path = re.search(r'name="next" value="([^"]+)"', login_page.text)
    assert next_path
    return client.post(
        "/login",
        data={
            "csrf_token": csrf_token(login_page.text),
            "login": "ada",
            "password": PASSWORD,
            "next": html.unescape(next_path.group(1)),
        },
    )


def verified_jwt(client: Client, token: str, algorithms: list[str], **checks: Any) -> Any:
    keys = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    return jwt.decode(token, key, algorithms=algorithms, options={"verify_exp": False}, **checks)


def test_the_code_flow_from_consent_to_userinfo_and_refresh(
    client: Client, container: Container
) -> None:
    sign_in(client, container)
    client_id, secret = register(container)
    verifier, challenge = pkce()

    first = authorize_s256(client, client_id, challenge)
    assert "Wiki" in first.text and "See your email address" in first.text
    got = back_to_app(allow(client, first))
    assert got["state"] == "s-123" and got["iss"] == container.settings.issuer  # RFC 9207

    answer = exchange(client, client_id, secret, got["code"], verifier)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    tokens = answer.json()
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
    assert set(tokens["scope"].split()) == {"openid", "email", "profile", "offline_access"}

    userinfo_audience = container.settings.public_url.rstrip("/") + "/oauth2/userinfo"
    assert jwt.get_unverified_header(tokens["access_token"])["typ"] == "at+jwt"
    access = verified_jwt(
        client,
        tokens["access_token"],
        ["RS256"],
        audience=userinfo_audience,
        issuer=container.settings.issuer,
    )
    me = client.get("/api/users/me", headers=bearer(log_in(client))).json()
    assert access["sub"] == me["id"] and access["client_id"] == client_id
    assert access["aud"] != container.settings.jwt_audience
    assert access["sid"] and access["jti"]

    id_token = verified_jwt(
        client, tokens["id_token"], ["RS256"], audience=client_id, issuer=container.settings.issuer
    )
    assert id_token["sub"] == me["id"] and id_token["nonce"] == "n-456"
    assert id_token["email"] == "ada@example.com" and id_token["email_verified"] is True
    assert id_token["preferred_username"] == "ada"
    assert id_token["auth_time"] <= id_token["iat"] and id_token["sid"] and id_token["at_hash"]
    assert id_token["amr"] == ["pwd"]  # RFC 8176: signed in with a password
    assert id_token["acr"] == "urn:tessera:acr:password"  # one factor

    info = client.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status_code == 200, info.text
    assert info.json() == {
        "sub": me["id"],
        "email": "ada@example.com",
        "email_verified": True,
        "preferred_username": "ada",
    }
    posted = client.post("/oauth2/userinfo", data={"access_token": tokens["access_token"]})
    assert posted.status_code == 200 and posted.json()["sub"] == me["id"]

    refreshed = client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client_id, secret),
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    wider = client.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed.json()["refresh_token"],
            "scope": "openid orders:write",
        },
        auth=(client_id, secret),
    )
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrower = client.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed.json()["refresh_token"],  # still good: nothing was turned
            "scope": "openid",
        },
        auth=(client_id, secret),
    )
    assert narrower.status_code == 200 and narrower.json()["scope"] == "openid"
    active = client.post(
        "/oauth2/introspect",
        data={"token": refreshed.json()["access_token"]},
        auth=(client_id, secret),
    ).json()
    assert active["active"] is True and active["sub"] == me["id"]

    # Consent given: the next authorization goes straight back with a code.
    again = authorize_s256(client, client_id, challenge)
    assert again.status_code == 302 and "code" in back_to_app(again)


def test_a_reused_code_is_refused_and_ends_what_its_first_use_started(
    client: Client, container: Container
) -> None:
    sign_in(client, container)
    client_id, secret = register(container)
    verifier, challenge = pkce()
    code = code_for(client, client_id, challenge)
    tokens = exchange(client, client_id, secret, code, verifier).json()
    second = exchange(client, client_id, secret, code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    gone = client.post(
        "/oauth2/introspect", data={"token": tokens["access_token"]}, auth=(client_id, secret)
    ).json()
    assert gone == {"active": False}
    refused = client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client_id, secret),
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_codes_are_refused_expired_wrong_verifier_other_client_or_redirect(
    client: Client, container: Container, clock: FakeClock
) -> None:
    sign_in(client, container)
    client_id, secret = register(container)
    other_id, other_secret = register(container)
    verifier, challenge = pkce()

    def refused(answer: Any, error: str = "invalid_grant") -> None:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == error

    code = code_for(client, client_id, challenge)
    clock.advance(seconds=61)
    refused(exchange(client, client_id, secret, code, verifier))
    refused(exchange(client, client_id, secret, code_for(client, client_id, challenge), "x" * 43))
    refused(
        exchange(client, client_id, secret, code_for(client, client_id, challenge), None),
        "invalid_request",
    )
    refused(
        exchange(client, other_id, other_secret, code_for(client, client_id, challenge), verifier)
    )
    refused(
        exchange(
            client,
            client_id,
            secret,
            code_for(client, client_id, challenge),
            verifier,
            redirect_uri="https://wiki.example/other",
        )
    )


def test_refresh_is_refused_to_another_client_a_removed_client_and_a_rotated_secret(
    client: Client, container: Container, clock: FakeClock
) -> None:
    sign_in(client, container)
    client_id, secret = register(container)
    other_id, other_secret = register(container)
    verifier, challenge = pkce()
    tokens = exchange(
        client, client_id, secret, code_for(client, client_id, challenge), verifier
    ).json()

    def refresh(credentials: tuple[str, str | None]) -> Any:
        return client.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=credentials,
        )

    stolen = refresh((other_id, other_secret))
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"

    container.clients.rotate_secret(client_id, "test")
    clock.advance(seconds=SECRET_OVERLAP.total_seconds() + 1)
    rotated_out = refresh((client_id, secret))
    assert rotated_out.status_code == 401 and rotated_out.json()["error"] == "invalid_client"
    assert "www-authenticate" in rotated_out.headers

    container.clients.remove(other_id, "test")
    removed = client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": "x" * 60},
        auth=(other_id, other_secret),
    )
    assert removed.status_code == 401 and removed.json()["error"] == "invalid_client"


def test_a_public_client_must_use_s256_pkce(client: Client, container: Container) -> None:
    sign_in(client, container)
    client_id, _ = register(container, SPA)
    spa = {"redirect_uri": "https://dash.example/cb", "scope": "openid email"}
    missing = back_to_app(authorize(client, client_id, **spa))
    assert missing["error"] == "invalid_request" and missing["state"] == "s-123"
    verifier, challenge = pkce()
    plain = back_to_app(
        authorize(client, client_id, code_challenge=verifier, code_challenge_method="plain", **spa)
    )
    assert plain["error"] == "invalid_request"
    unnamed = back_to_app(authorize(client, client_id, code_challenge=challenge, **spa))
    assert unnamed["error"] == "invalid_request"

    code = back_to_app(allow(client, authorize_s256(client, client_id, challenge, **spa)))["code"]
    answer = client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://dash.example/cb",
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    # A public client refreshes and revokes with its id alone; it may not introspect.
    turned = client.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
        },
    )
    assert turned.status_code == 200, turned.text
    looked = client.post(
        "/oauth2/introspect", data={"token": tokens["access_token"], "client_id": client_id}
    )
    assert looked.status_code == 401
    revoked = client.post(
        "/oauth2/revoke",
        data={"token": turned.json()["refresh_token"], "client_id": client_id},
    )
    assert revoked.status_code == 200, revoked.text
    after = client.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": turned.json()["refresh_token"],
            "client_id": client_id,
        },
    )
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"


def test_requests_that_cannot_go_back_to_the_app_get_an_error_page(
    client: Client, container: Container
) -> None:
    sign_in(client, container)
    client_id, _ = register(container)
    for params in (
        {"redirect_uri": "https://evil.example/callback"},
        {"redirect_uri": CALLBACK + "/"},
        {"client_id": "not-a-client"},
        {"redirect_uri": ""},
    ):
        answer = authorize(client, params.pop("client_id", client_id), **params)
        assert answer.status_code == 400, answer.text
        assert (
            "location" not in answer.headers and "evil.example" not in answer.text.split("<main")[0]
        )
        assert answer.headers["content-type"].startswith("text/html")


def test_implicit_and_hybrid_are_refused_back_to_the_app(
    client: Client, container: Container
) -> None:
    sign_in(client, container)
    client_id, _ = register(container)
    for response_type in ("token", "id_token", "code id_token"):
        got = back_to_app(authorize(client, client_id, response_type=response_type))
        assert got["error"] == "unsupported_response_type" and got["state"] == "s-123"
        assert got["iss"] == container.settings.issuer


def test_prompt_none_without_a_session_or_consent(client: Client, container: Container) -> None:
    client.follow_redirects = False
    register_and_verify(client, container)
    client_id, _ = register(container)
    _, challenge = pkce()
    pkce_params = {"code_challenge": challenge, "code_challenge_method": "S256"}
    assert back_to_app(authorize(client, client_id, prompt="none", **pkce_params))["error"] == (
        "login_required"
    )
    sign_in_page = authorize(client, client_id, login_hint="ada", **pkce_params)
    assert sign_in_page.status_code == 303
    assert sign_in_page.headers["location"].startswith("/login?next=%2Foauth2%2Fauthorize")
    assert 'value="ada"' in client.get(sign_in_page.headers["location"]).text

    token = csrf_token(client.get("/login").text)
    client.post("/login", data={"csrf_token": token, "login": "ada", "password": PASSWORD})
    assert back_to_app(authorize(client, client_id, prompt="none", **pkce_params))["error"] == (
        "consent_required"
    )


def test_signing_in_first_comes_back_to_the_authorization(
    client: Client, container: Container
) -> None:
    client.follow_redirects = False
    register_and_verify(client, container)
    client_id, secret = register(container)
    verifier, challenge = pkce()
    start = authorize_s256(client, client_id, challenge)
    signed_in = sign_in_to_continue(client, client.get(start.headers["location"]))
    assert signed_in.status_code == 303
    consent = client.get(signed_in.headers["location"])
    code = back_to_app(allow(client, consent))["code"]
    assert exchange(client, client_id, secret, code, verifier).status_code == 200


def test_a_hostile_page_cannot_post_the_consent_form(client: Client, container: Container) -> None:
    sign_in(client, container)
    client_id, _ = register(container)
    _, challenge = pkce()
    page = authorize_s256(client, client_id, challenge)
    request_id = re.search(r'name="request" value="([^"]+)"', page.text)
    assert request_id
    forged = client.post(
        "/oauth2/authorize",
        data={"request": html.unescape(request_id.group(1)), "decision": "allow"},
    )
    assert forged.status_code == 403
    cross = client.post(
        "/oauth2/authorize",
        data={
            "csrf_token": csrf_token(page.text),
            "request": html.unescape(request_id.group(1)),
            "decision": "allow",
        },
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403
    me = client.get("/api/users/me", headers=bearer(log_in(client))).json()
    assert container.consents.granted(UUID(me["id"]), client_id) == frozenset()


def test_deny_goes_back_with_access_denied(client: Client, container: Container) -> None:
    sign_in(client, container)
    client_id, _ = register(container)
    _, challenge = pkce()
    page = authorize_s256(client, client_id, challenge)
    got = back_to_app(allow(client, page, decision="deny"))
    assert got["error"] == "access_denied" and got["state"] == "s-123"
    assert got["iss"] == container.settings.issuer and "code" not in got


def test_tokens_do_not_cross_between_tessera_and_apps(client: Client, container: Container) -> None:
    _, _, tokens = app_tokens(client, container)
    first_party = log_in(client)

    app_at_api = client.get("/api/users/me", headers=bearer(tokens))
    assert app_at_api.status_code == 401
    ours_at_userinfo = client.get("/oauth2/userinfo", headers=bearer(first_party))
    assert ours_at_userinfo.status_code == 401
    assert 'error="invalid_token"' in ours_at_userinfo.headers["www-authenticate"]
    none = client.get("/oauth2/userinfo")
    assert none.status_code == 401 and none.headers["www-authenticate"] == 'Bearer realm="tessera"'
    app_refresh_at_api = client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert app_refresh_at_api.status_code == 401


@pytest.mark.parametrize("ending", ["everywhere", "revoked"])
def test_ending_the_sessions_or_revoking_stops_the_app_tokens(
    client: Client, container: Container, ending: str
) -> None:
    client_id, secret, tokens = app_tokens(client, container)
    if ending == "everywhere":
        first_party = log_in(client)
        out = client.post(
            "/api/auth/logout", json={"all_sessions": True}, headers=bearer(first_party)
        )
        assert out.status_code in (200, 204), out.text
    else:
        out = client.post(
            "/oauth2/revoke", data={"token": tokens["access_token"]}, auth=(client_id, secret)
        )
        assert out.status_code == 200, out.text
    info = client.get("/oauth2/userinfo", headers=bearer(tokens))
    assert info.status_code == 401
    introspected = client.post(
        "/oauth2/introspect", data={"token": tokens["access_token"]}, auth=(client_id, secret)
    ).json()
    assert introspected == {"active": False}


def test_a_cross_site_arrival_is_sent_again_from_this_site(
    client: Client, container: Container
) -> None:
    sign_in(client, container)
    client_id, _ = register(container)
    answer = client.get(
        "/oauth2/authorize",
        params={"response_type": "code", "client_id": client_id, "redirect_uri": CALLBACK},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert answer.status_code == 200
    assert '<meta http-equiv="refresh" content="0;url=/oauth2/authorize?' in answer.text
    assert "<script>" not in answer.text


def test_the_trail_shows_the_consent_and_the_app_session_with_the_client(
    client: Client, container: Container
) -> None:
    sign_in(client, container)
    client_id, secret = register(container)
    verifier, challenge = pkce()
    code = code_for(client, client_id, challenge)
    failed = exchange(client, client_id, secret, code, "y" * 43)  # a failure records nothing
    assert failed.status_code == 400
    exchange(client, client_id, secret, code_for(client, client_id, challenge), verifier)
    entries = list(container.history.trail())
    consents = [e for e in entries if e.type == "ConsentGranted"]
    assert [(e.details["client_id"], e.details["scopes"]) for e in consents] == [
        (client_id, ["email", "offline_access", "openid", "profile"])
    ]
    apps = [e for e in entries if e.type == "SessionStarted" and e.details.get("client_id")]
    assert [e.details["client_id"] for e in apps] == [client_id]  # one: the failed one none
    # Issue #22: the app's session is on its Session alone, the account's stream untouched.
    assert not [e for e in entries if e.type == "AppSessionStarted"]


@pytest.mark.parametrize("asks", [{"prompt": "login"}, {"max_age": "60"}])
def test_a_fresh_sign_in_is_asked_for_without_signing_anyone_out(
    client: Client, container: Container, clock: FakeClock, asks: dict[str, str]
) -> None:
    sign_in(client, container)
    client_id, secret = register(container)
    verifier, challenge = pkce()
    code_for(client, client_id, challenge)  # consent given
    clock.advance(minutes=5)
    start = authorize_s256(client, client_id, challenge, **asks)
    assert start.status_code == 303 and "again=1" in start.headers["location"]
    assert client.get("/account").status_code == 200  # a link alone signs no one out
    login_page = client.get(start.headers["location"])
    assert 'id="password"' in login_page.text  # shown to a signed-in browser
    again = sign_in_to_continue(client, login_page)
    assert again.status_code == 303
    code = back_to_app(client.get(again.headers["location"]))["code"]
    tokens = exchange(client, client_id, secret, code, verifier).json()
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["auth_time"] >= int(clock.now().timestamp())  # the new sign-in's


def test_an_access_token_for_a_registered_resource_only(
    client: Client, container: Container
) -> None:
    sign_in(client, container)
    api = "https://orders.example/"
    client_id, secret = register(container, replace(WIKI, resources=(api,)))
    verifier, challenge = pkce()
    other = back_to_app(
        authorize_s256(client, client_id, challenge, resource="https://billing.example/")
    )
    assert other["error"] == "invalid_target" and other["state"] == "s-123"
    code = code_for(client, client_id, challenge, resource=api)
    tokens = exchange(client, client_id, secret, code, verifier).json()
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["aud"] == api
    # A token for another API is no userinfo token.
    assert client.get("/oauth2/userinfo", headers=bearer(tokens)).status_code == 401


def test_an_authorization_request_by_post_is_asked_again_by_get(
    client: Client, container: Container
) -> None:
    sign_in(client, container)
    client_id, _ = register(container)
    _, challenge = pkce()
    posted = client.post(
        "/oauth2/authorize",
        data={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": CALLBACK,
            "scope": "openid",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://wiki.example"},
    )
    assert posted.status_code == 200
    again = destination(posted)
    assert again.startswith("/oauth2/authorize?") and "response_type=code" in again
    assert "asks to" in client.get(again).text  # the consent page: signed in, by GET


def test_userinfo_shows_a_change_another_process_made_at_once(
    client: Client, container: Container, clock: FakeClock
) -> None:
    """userinfo answers from the process's copy of the account while its change mark holds,
    as /me does: a change saved by another process is shown on the very next request."""
    sign_in(client, container)
    client_id, secret = register(container)
    verifier, challenge = pkce()
    code = code_for(client, client_id, challenge)
    access = exchange(client, client_id, secret, code, verifier).json()["access_token"]
    info = client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert info.status_code == 200 and "name" not in info.json()  # a copy is kept now
    other = build(container.settings, clock=clock)  # a second server process
    try:
        other.profile.update(UUID(info.json()["sub"]), "Ada Lovelace")
    finally:
        other.close()
    again = client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert again.json()["name"] == "Ada Lovelace"


def test_an_answer_for_one_app_is_readable_from_that_apps_origins_only(
    client: Client, container: Container
) -> None:
    """A preflight names no client, so any live client's origin passes it; the answer itself
    (tokens, claims) is readable only by the pages of the app it is for (issue #22: allowed
    origins per client)."""
    sign_in(client, container)
    client_id, secret = register(container)
    register(
        container, ClientSettings(name="Dashboard", redirect_uris=("https://dash.example/cb",))
    )
    wiki, dash = "https://wiki.example", "https://dash.example"
    assert CALLBACK.startswith(wiki + "/")
    verifier, challenge = pkce()
    form = {
        "grant_type": "authorization_code",
        "code": code_for(client, client_id, challenge),
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }
    exchanged = client.post(
        "/oauth2/token", data=form, auth=(client_id, secret or ""), headers={"Origin": dash}
    )
    assert exchanged.status_code == 200, exchanged.text
    assert "access-control-allow-origin" not in exchanged.headers
    tokens = exchanged.json()
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    refreshed = client.post(
        "/oauth2/token", data=refresh, auth=(client_id, secret or ""), headers={"Origin": wiki}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.headers["access-control-allow-origin"] == wiki
    access = refreshed.json()["access_token"]
    for origin, readable in ((dash, False), (wiki, True)):
        answer = client.get(
            "/oauth2/userinfo", headers={"Origin": origin, "Authorization": f"Bearer {access}"}
        )
        assert answer.status_code == 200, answer.text
        assert ("access-control-allow-origin" in answer.headers) is readable, origin
