"""RP-Initiated Logout 1.0 at /oauth2/logout through the real app and its pages: a valid
id_token_hint naming this browser's session signs it out and returns to the app's registered
post_logout_redirect_uri with its state; anything less asks the person first, and nothing sends
anyone to a URI not registered for that app exactly."""

from __future__ import annotations

import html
import re
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from application.clients.person_tokens import ID_TOKEN_TYPE
from application.views import Client as Where
from domain.client import ClientSettings
from domain.errors import InvalidRefreshToken
from domain.session import Session
from interfaces.container import Container
from tests.conftest import FakeClock, authenticated, event_count, run_async
from tests.http.test_api import Client, register_and_verify
from tests.http.test_pages import csrf_token, sign_in

BYE = "https://wiki.example/signed-out"
WIKI = ClientSettings(
    name="Team wiki",
    redirect_uris=("https://wiki.example/callback",),
    post_logout_redirect_uris=(BYE, "https://wiki.example/bye?from=tessera"),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "profile", "email", "offline_access"),
)
OTHER = ClientSettings(
    name="Other app",
    redirect_uris=("https://other.example/callback",),
    post_logout_redirect_uris=("https://other.example/bye",),
)
HERE = Where(ip="192.0.2.7", user_agent="test")


def browser_session(client: Client, container: Container) -> tuple[UUID, UUID]:
    """(account, browser session) of the page session the client's cookies hold."""
    caller = authenticated(container, client.cookies["tessera-access"])
    return caller.account_id, caller.session_id


def signed_in(client: Client, container: Container) -> tuple[UUID, UUID, str]:
    register_and_verify(client, container)
    sign_in(client)
    account_id, session_id = browser_session(client, container)
    return account_id, session_id, container.clients.register(WIKI, "test").client_id


def hint(
    container: Container,
    account_id: UUID,
    session_id: UUID,
    client_id: str,
    algorithm: str = "RS256",
    **claims: Any,
) -> str:
    """An ID token as the provider issues them, `claims` replacing its own."""
    now = int(container.clock.now().timestamp())
    token = {
        "iss": container.settings.issuer,
        "sub": str(account_id),
        "aud": client_id,
        "azp": client_id,
        "sid": str(session_id),
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    return container.claim_signer.sign(token, algorithm, ID_TOKEN_TYPE)


def form_of(page: str) -> dict[str, str]:
    """The hidden fields of the page's form to /oauth2/logout/end."""
    match = re.search(r'<form method="post" action="/oauth2/logout/end"(.*?)</form>', page, re.S)
    assert match, page
    fields = re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', match.group(1))
    return {name: html.unescape(value) for name, value in fields}


def still_signed_in(client: Client) -> bool:
    return client.get("/account").status_code == 200


def test_a_valid_hint_signs_this_browser_out_and_returns_to_the_app(
    site: tuple[Client, Container], clock: FakeClock
) -> None:
    client, container = site
    account_id, session_id, client_id = signed_in(client, container)
    token = hint(container, account_id, session_id, client_id)
    clock.advance(hours=2)  # an expired ID token still names the sign-in it was for

    asked = client.get(
        "/oauth2/logout",
        params={"id_token_hint": token, "post_logout_redirect_uri": BYE, "state": "s&t=1"},
    )
    assert asked.status_code == 200
    assert "data-auto-submit" in asked.text and "Team wiki" in asked.text
    assert still_signed_in(client)  # the app's request alone ends nothing (no cookies on it)

    done = client.post("/oauth2/logout/end", data=form_of(asked.text))
    assert done.status_code == 200, done.text
    link = re.search(r'<a class="button" href="([^"]+)" data-auto-follow>', done.text)
    assert link and html.unescape(link.group(1)) == f"{BYE}?state=s%26t%3D1"
    assert 'tessera-access=""' in done.headers.get("set-cookie", "")
    assert not still_signed_in(client)
    session = container.log.find(session_id, Session)
    assert session is not None and session.revocation_reason == "logout"


def test_other_algorithms_of_ours_are_valid_hints(site: tuple[Client, Container]) -> None:
    client, container = site
    account_id, session_id, client_id = signed_in(client, container)
    for algorithm in container.claim_signer.algorithms:
        token = hint(container, account_id, session_id, client_id, algorithm)
        asked = client.get("/oauth2/logout", params={"id_token_hint": token})
        assert "data-auto-submit" in asked.text, algorithm


def foreign_hint(container: Container, account_id: UUID, session_id: UUID, client_id: str) -> str:
    """A well-formed ID token for the right session, signed by a key that is not ours."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(container.clock.now().timestamp())
    claims = {
        "iss": container.settings.issuer,
        "sub": str(account_id),
        "aud": client_id,
        "sid": str(session_id),
        "iat": now,
        "exp": now + 300,
    }
    kid = container.claim_signer.jwks()["keys"][0]["kid"]
    return jwt.encode(claims, key, "RS256", headers={"kid": kid, "typ": ID_TOKEN_TYPE})


def refused_hints(container: Container, account_id: UUID, session_id: UUID, client_id: str) -> Any:
    removed = container.clients.register(WIKI, "test").client_id
    removed_hint = hint(container, account_id, session_id, removed)
    container.clients.remove(removed, "test")
    access = container.login.log_in("ada", "correct horse battery staple", HERE).access_token
    return {
        "another issuer": hint(
            container, account_id, session_id, client_id, iss="https://evil.example"
        ),
        "not our key": foreign_hint(container, account_id, session_id, client_id),
        "a removed app": removed_hint,
        "two audiences": hint(container, account_id, session_id, client_id, aud=[client_id, "x"]),
        "no session": hint(container, account_id, session_id, client_id, sid=None),
        "a first-party access token": access,
        "not a token": "e30.e30.e30",
    }


def test_without_a_valid_hint_the_person_is_asked_and_nothing_ends_until_they_confirm(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    account_id, session_id, client_id = signed_in(client, container)
    for why, token in refused_hints(container, account_id, session_id, client_id).items():
        asked = client.get(
            "/oauth2/logout",
            params={"id_token_hint": token, "post_logout_redirect_uri": BYE, "state": "x"},
        )
        assert asked.status_code == 200, why
        assert "data-auto-submit" not in asked.text, why
        assert 'name="confirm" value="yes"' in asked.text, why
        # Posting what the page carries, without the person's confirmation, ends nothing.
        fields = {k: v for k, v in form_of(asked.text).items() if k != "confirm"}
        again = client.post("/oauth2/logout/end", data=fields)
        assert 'name="confirm" value="yes"' in again.text, why
        assert "data-auto-follow" not in again.text and f'href="{BYE}' not in again.text, why
        assert still_signed_in(client), why

    # None at all, with the app named by client_id: the person confirms, and returns there.
    asked = client.get(
        "/oauth2/logout",
        params={"client_id": client_id, "post_logout_redirect_uri": BYE, "state": "x"},
    )
    assert "Team wiki asks" in asked.text and "data-auto-submit" not in asked.text
    done = client.post("/oauth2/logout/end", data=form_of(asked.text))
    assert f'href="{BYE}?state=x"' in done.text
    assert not still_signed_in(client)


def test_a_hint_of_another_sign_in_signs_out_only_once_confirmed(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    account_id, _, client_id = signed_in(client, container)
    earlier = hint(container, account_id, uuid4(), client_id)  # a sign-in since ended
    asked = client.get("/oauth2/logout", params={"id_token_hint": earlier})
    assert "data-auto-submit" in asked.text
    fields = form_of(asked.text)
    answer = client.post("/oauth2/logout/end", data=fields)
    assert 'name="confirm" value="yes"' in answer.text
    assert still_signed_in(client)
    done = client.post("/oauth2/logout/end", data=form_of(answer.text))
    assert "You are signed out" in done.text
    assert not still_signed_in(client)


def test_an_unregistered_post_logout_redirect_uri_is_never_followed(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    account_id, session_id, client_id = signed_in(client, container)
    other = container.clients.register(OTHER, "test").client_id
    token = hint(container, account_id, session_id, client_id)
    # Signed out already: nothing to confirm, so only the URI decides where the page leads.
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/account").text)})
    assert not still_signed_in(client)
    for uri in (
        "https://evil.example/",
        "https://wiki.example/signed-out/",  # not exactly as registered
        "https://wiki.example/bye",  # registered with a query
        "https://other.example/bye",  # another app's
        "javascript:alert(1)",
    ):
        for params in (
            {"id_token_hint": token, "post_logout_redirect_uri": uri},
            {"client_id": client_id, "post_logout_redirect_uri": uri},
            {"client_id": other, "id_token_hint": token, "post_logout_redirect_uri": BYE},
            {"post_logout_redirect_uri": uri},
        ):
            asked = client.get("/oauth2/logout", params=params)
            assert asked.status_code == 200
            fields = {**form_of(asked.text), "confirm": "yes"}
            done = client.post("/oauth2/logout/end", data=fields)
            assert "You are signed out" in done.text
            assert "data-auto-follow" not in done.text, (uri, params)
    # Registered with a query: kept, the state added after it.
    asked = client.get(
        "/oauth2/logout",
        params={
            "id_token_hint": token,
            "post_logout_redirect_uri": "https://wiki.example/bye?from=tessera",
            "state": "abc",
        },
    )
    done = client.post("/oauth2/logout/end", data=form_of(asked.text))
    assert 'href="https://wiki.example/bye?from=tessera&amp;state=abc"' in done.text


def test_no_other_site_can_post_the_sign_out(site: tuple[Client, Container]) -> None:
    client, container = site
    account_id, session_id, client_id = signed_in(client, container)
    token = hint(container, account_id, session_id, client_id)
    fields = form_of(client.get("/oauth2/logout", params={"id_token_hint": token}).text)
    before = event_count(container)
    for forged in (
        {k: v for k, v in fields.items() if k != "csrf_token"},
        {**fields, "csrf_token": "0" * 64},
    ):
        assert client.post("/oauth2/logout/end", data=forged).status_code == 403
    cross = client.post(
        "/oauth2/logout/end", data=fields, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert event_count(container) == before
    assert still_signed_in(client)


def test_a_malformed_request_is_refused(site: tuple[Client, Container]) -> None:
    client, _ = site
    for query in (
        "state=a&state=b",
        "id_token_hint=" + "a" * 9000,
        "post_logout_redirect_uri=https://wiki.example/" + "a" * 2000,
    ):
        answer = client.get(f"/oauth2/logout?{query}")
        assert answer.status_code == 400, query
    # The app may post its request as a form, with the same rules.
    posted = client.post("/oauth2/logout", data={"state": "a", "client_id": "x"})
    assert posted.status_code == 200 and 'name="confirm"' in posted.text


def test_the_browser_session_online_app_sessions_end_and_offline_ones_survive(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    account_id, session_id, client_id = signed_in(client, container)
    container.consents.grant(account_id, client_id, ["openid", "offline_access"], HERE)
    sessions = container.sessions

    def app_session(browser: UUID, scopes: list[str]) -> str:
        started = sessions.start_app(
            account_id, client_id, browser, HERE, uuid4(), scopes, container.settings.issuer
        )
        return started.refresh_token

    online = app_session(session_id, ["openid"])
    offline = app_session(session_id, ["openid", "offline_access"])
    elsewhere = app_session(uuid4(), ["openid"])  # from another browser's sign-in
    token = hint(container, account_id, session_id, client_id)
    asked = client.get("/oauth2/logout", params={"id_token_hint": token})
    client.post("/oauth2/logout/end", data=form_of(asked.text))
    assert not still_signed_in(client)

    def refreshes(refresh_token: str) -> bool:
        try:
            run_async(sessions.rotate_app(refresh_token, client_id))
        except Exception:
            return False
        return True

    assert not refreshes(online)
    assert refreshes(offline)
    assert refreshes(elsewhere)


def test_the_sign_out_button_ends_the_online_app_sessions_too(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    account_id, session_id, client_id = signed_in(client, container)
    container.consents.grant(account_id, client_id, ["openid"], HERE)
    app = container.sessions.start_app(
        account_id, client_id, session_id, HERE, uuid4(), ["openid"], container.settings.issuer
    )
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/account").text)})
    assert not still_signed_in(client)
    with pytest.raises(InvalidRefreshToken):
        run_async(container.sessions.rotate_app(app.refresh_token, client_id))
