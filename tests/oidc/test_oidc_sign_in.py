"""Signing in with another identity provider, end to end against a real OpenID Provider
(panva's oidc-provider, tests/oidc/harness.py), through the real ASGI app on the embedded
default and on PostgreSQL + Redis: a first sign-in makes an account, a second identity links
after the account is proven, an email collision never links by itself, unlinking (never the
last way in), and the refusals of the flow itself (state, browser, redirect URI, an outage)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import httpx
import pytest
from litestar.testing import TestClient

from domain.account import Account
from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD
from tests.conftest import event_count, run_projections
from tests.http.test_api import bearer, log_in, register_and_verify
from tests.http.test_passkeys_api import new_events
from tests.oidc.harness import OidcProvider, sign_in

Client = TestClient[Any]
PUBLIC_URL = "http://127.0.0.1:8000"
APP = "http://127.0.0.1:9999/signed-in"  # the client's redirect URI, on the allow-list
CLIENT_SECRET = "idp-client-secret"
ACCOUNTS = {
    "alice-sub": {"email": "alice@example.com", "email_verified": True, "name": "Alice Liddell"},
    "unverified-sub": {"email": "carol@example.com", "email_verified": False},
    "ada-at-idp": {"email": "ada@example.com", "email_verified": True},
    "second-sub": {"email": "ada.other@example.com", "email_verified": True},
}


# Rules that do not depend on the store run on the embedded default only; what does (the flows, single use of state and codes, sealing, erasure) runs on both.
sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


def provider_client(name: str) -> dict[str, Any]:
    return {
        "client_id": f"tessera-{name}",
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{PUBLIC_URL}/api/auth/oidc/{name}/callback"],
    }


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(
        clients=[provider_client("idp"), provider_client("other")], accounts=ACCOUNTS
    ) as running:
        yield running


def oidc_environ(idp: OidcProvider, **extra: str) -> dict[str, str]:
    return {
        "OIDC_PROVIDERS": "idp,other",
        "OIDC_REDIRECT_URIS": APP,
        "OIDC_IDP_ISSUER": idp.issuer,
        "OIDC_IDP_CLIENT_ID": "tessera-idp",
        "OIDC_IDP_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_IDP_LABEL": "Test IdP",
        "OIDC_OTHER_ISSUER": idp.issuer,
        "OIDC_OTHER_CLIENT_ID": "tessera-other",
        "OIDC_OTHER_CLIENT_SECRET": CLIENT_SECRET,
        **extra,
    }


@pytest.fixture
def settings_environ(idp: OidcProvider) -> dict[str, str]:
    return oidc_environ(idp)


def start(
    client: Client, provider: str = "idp", headers: dict[str, str] | None = None, **params: str
) -> httpx.Response:
    return client.get(
        f"/api/auth/oidc/{provider}/start",
        params={"redirect_uri": APP, **params},
        headers=headers,
        follow_redirects=False,
    )


def at_provider(client: Client, subject: str, provider: str = "idp", **params: Any) -> str:
    """The whole trip to the provider: where it sends the browser back (tessera's callback)."""
    started = start(client, provider, **params)
    assert started.status_code == 302, started.text
    return sign_in(started.headers["location"], subject)


def linking(
    client: Client,
    subject: str,
    provider: str = "idp",
    headers: dict[str, str] | None = None,
    proof: dict[str, Any] | None = None,
) -> str:
    """A link, re-authenticated (the password by default), to the provider and back."""
    started = client.post(
        f"/api/auth/oidc/{provider}/link",
        json={"redirect_uri": APP, **({"password": PASSWORD} if proof is None else proof)},
        headers=headers,
    )
    assert started.status_code == 200, started.text
    return sign_in(started.json()["authorization_url"], subject)


def back(client: Client, callback: str) -> httpx.Response:
    parts = urlsplit(callback)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL
    return client.get(f"{parts.path}?{parts.query}", follow_redirects=False)


def code_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(APP + "?")
    query = parse_qs(urlsplit(location).query)
    assert set(query) == {"code"}  # never a token in a URL
    return query["code"][0]


def signed_in(client: Client, subject: str, provider: str = "idp") -> dict[str, Any]:
    code = code_of(back(client, at_provider(client, subject, provider)))
    exchanged = client.post("/api/auth/oidc/exchange", json={"code": code})
    assert exchanged.status_code == 200, exchanged.text
    return dict(exchanged.json())


def account_of(container: Container, tokens: dict[str, Any]) -> Account:
    claims = container.signer.verify(tokens["access_token"], container.clock.now())
    account = container.log.find(claims.account_id, Account)
    assert account is not None
    return account


# The flows


def test_a_first_sign_in_makes_an_account_and_the_second_finds_it(
    client: Client, container: Container
) -> None:
    providers = client.get("/api/auth/oidc/providers").json()
    assert {"name": "idp", "label": "Test IdP"} in providers

    before = event_count(container)
    tokens = signed_in(client, "alice-sub")
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
    account = account_of(container, tokens)
    assert (account.email, account.email_verified, account.has_password) == (
        "alice@example.com",
        True,
        False,
    )
    assert account.username == "alice-liddell" or account.username.startswith("alice")
    assert new_events(container, before) == [
        "Registered",
        "EmailVerified",
        "IdentityLinked",
        "EmailClaimed",
        "UsernameClaimed",
        "IdentityClaimed",
        "IdentityUsed",
        "SessionStarted",
    ]
    me = client.get("/api/users/me", headers=bearer(tokens))
    assert me.status_code == 200 and me.json()["email"] == "alice@example.com"
    (identity,) = client.get("/api/users/me/identities", headers=bearer(tokens)).json()
    assert (identity["provider"], identity["email"]) == ("idp", "alice@example.com")

    again = signed_in(client, "alice-sub")
    assert account_of(container, again).id == account.id
    # A sign-in like any other: the trail, the activity and the new-sign-in mail see it.
    run_projections(container)
    activity = client.get("/api/users/me/activity", headers=bearer(again)).json()["entries"]
    assert "IdentityUsed" in [entry["type"] for entry in activity]


@sqlite_only
def test_an_unverified_provider_email_makes_an_unverified_account(
    client: Client, container: Container
) -> None:
    code = back(client, at_provider(client, "unverified-sub"))
    # REQUIRE_VERIFIED_EMAIL: the account exists, unverified, and a verification mail is on
    # its way; the sign-in waits for it, as a password login would.
    assert (code.status_code, code.json()["code"]) == (403, "email_not_verified")
    claim = container.log.email_claim("carol@example.com")
    assert claim is not None and claim.account_id is not None
    account = container.log.find(claim.account_id, Account)
    assert account is not None and not account.email_verified


def test_an_email_collision_never_links_by_itself_but_the_owner_links_after_signing_in(
    client: Client, container: Container
) -> None:
    owner = register_and_verify(client, container, "ada")  # ada@example.com, with a password
    before = event_count(container)
    collided = back(client, at_provider(client, "ada-at-idp"))
    assert (collided.status_code, collided.json()["code"]) == (409, "account_exists")
    assert new_events(container, before) == []

    tokens = log_in(client, "ada")
    linked = back(client, linking(client, "ada-at-idp", headers=bearer(tokens)))
    assert linked.status_code == 303, linked.text
    assert linked.headers["location"] == f"{APP}?linked=idp"
    # A second provider's identity, linked the same way.
    linked = back(client, linking(client, "second-sub", "other", headers=bearer(tokens)))
    assert linked.status_code == 303, linked.text

    identities = client.get("/api/users/me/identities", headers=bearer(tokens)).json()
    assert sorted(i["provider"] for i in identities) == ["idp", "other"]
    via_idp = signed_in(client, "ada-at-idp")
    assert str(account_of(container, via_idp).id) == owner["id"]
    via_other = signed_in(client, "second-sub", "other")
    assert str(account_of(container, via_other).id) == owner["id"]


@sqlite_only
def test_linking_needs_a_bearer_token_and_is_never_a_query_string(client: Client) -> None:
    refused = client.post(
        "/api/auth/oidc/idp/link", json={"redirect_uri": APP, "password": PASSWORD}
    )
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_access_token")
    gone = start(client, link="true")  # the old way: no such parameter any more
    assert gone.status_code == 400, gone.text


@sqlite_only
def test_an_identity_linked_elsewhere_is_not_linked_again(
    client: Client, container: Container
) -> None:
    signed_in(client, "alice-sub")  # alice's identity: her own account
    register_and_verify(client, container, "ada")
    tokens = log_in(client, "ada")
    taken = back(client, linking(client, "alice-sub", headers=bearer(tokens)))
    assert (taken.status_code, taken.json()["code"]) == (409, "identity_taken")


@sqlite_only
def test_unlinking_is_refused_for_the_last_way_in(client: Client, container: Container) -> None:
    tokens = signed_in(client, "alice-sub")  # no password, no passkey: the identity is all
    headers = bearer(tokens)
    # No password: the provider sign-in was moments ago (REAUTH_MAX_AGE), which proves it.
    tokens_other = back(client, linking(client, "second-sub", "other", headers, proof={}))
    assert tokens_other.status_code == 303
    first, second = client.get("/api/users/me/identities", headers=headers).json()
    unlinked = client.request(
        "DELETE", f"/api/users/me/identities/{first['id']}", headers=headers, json={}
    )
    assert unlinked.status_code == 204, unlinked.text
    refused = client.request(
        "DELETE", f"/api/users/me/identities/{second['id']}", headers=headers, json={}
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "last_sign_in_method")
    missing = client.request(
        "DELETE", f"/api/users/me/identities/{first['id']}", headers=headers, json={}
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "identity_not_found")
    # The unlinked identity leads nowhere now; its email is still this account's, so a new
    # account is not made for it either.
    again = back(client, at_provider(client, "alice-sub"))
    assert (again.status_code, again.json()["code"]) == (409, "account_exists")


def test_erasure_forgets_the_link_and_the_identity_signs_up_afresh(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container, "ada")
    tokens = log_in(client, "ada")
    back(client, linking(client, "ada-at-idp", headers=bearer(tokens)))
    account = account_of(container, tokens)
    erased = client.request(
        "DELETE", "/api/users/me", headers=bearer(tokens),
        json={"password": "correct horse battery staple"},
    )  # fmt: skip
    assert erased.status_code == 204, erased.text
    assert container.log.identity_claim("idp", "ada-at-idp") is not None
    claim = container.log.identity_claim("idp", "ada-at-idp")
    assert claim is not None and claim.account_id is None  # released
    fresh = signed_in(client, "ada-at-idp")
    assert account_of(container, fresh).id != account.id


# The flow's refusals: each a 4xx that records nothing


@sqlite_only
def test_a_redirect_uri_off_the_list_is_refused(client: Client, container: Container) -> None:
    before = event_count(container)
    refused = client.get(
        "/api/auth/oidc/idp/start",
        params={"redirect_uri": "https://evil.example/steal"},
        follow_redirects=False,
    )
    assert (refused.status_code, refused.json()["code"]) == (400, "redirect_uri_not_allowed")
    unknown = start(client, "nope")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_provider")
    assert event_count(container) == before


def test_a_replayed_state_is_refused(client: Client, container: Container) -> None:
    callback = at_provider(client, "alice-sub")
    code_of(back(client, callback))
    before = event_count(container)
    replayed = back(client, callback)
    assert (replayed.status_code, replayed.json()["code"]) == (400, "invalid_state")
    assert event_count(container) == before


@sqlite_only
def test_a_wrong_state_is_refused(client: Client, container: Container) -> None:
    callback = at_provider(client, "alice-sub")
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    before = event_count(container)
    for state in ("A" * 43, "not-even-base64!", ""):
        wrong = client.get(
            parts.path, params={"code": query["code"][0], "state": state}, follow_redirects=False
        )
        assert (wrong.status_code, wrong.json()["code"]) == (400, "invalid_state")
    assert event_count(container) == before


@sqlite_only
def test_a_state_from_another_browser_is_refused(client: Client, container: Container) -> None:
    callback = at_provider(client, "alice-sub")
    client.cookies.clear()  # another browser: not the cookie that started it
    client.cookies.set("tessera-oidc", "x" * 43)
    before = event_count(container)
    refused = back(client, callback)
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_state")
    assert event_count(container) == before


@sqlite_only
def test_a_state_for_another_provider_is_refused(client: Client, container: Container) -> None:
    callback = at_provider(client, "alice-sub")
    crossed = callback.replace("/oidc/idp/", "/oidc/other/")
    refused = back(client, crossed)
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_state")


def test_a_sign_in_code_works_once(client: Client, container: Container) -> None:
    code = code_of(back(client, at_provider(client, "alice-sub")))
    assert client.post("/api/auth/oidc/exchange", json={"code": code}).status_code == 200
    again = client.post("/api/auth/oidc/exchange", json={"code": code})
    assert (again.status_code, again.json()["code"]) == (400, "invalid_sign_in_code")


def test_a_sign_in_code_is_good_only_in_the_browser_that_started(
    client: Client, container: Container
) -> None:
    """Login CSRF: a code of the attacker's own sign-in, planted at a victim's app (its
    redirect URI), signs the victim in as nobody; and the refused try spends the code."""
    code = code_of(back(client, at_provider(client, "alice-sub")))
    started_in = client.cookies["tessera-oidc"]
    client.cookies.clear()  # another browser: no flow cookie, or one of its own
    before = event_count(container)
    for cookies in ({}, {"tessera-oidc": "x" * 43}):
        client.cookies.clear()
        client.cookies.update(cookies)
        refused = client.post("/api/auth/oidc/exchange", json={"code": code})
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_sign_in_code")
    assert event_count(container) == before
    client.cookies.set("tessera-oidc", started_in)
    spent = client.post("/api/auth/oidc/exchange", json={"code": code})
    assert (spent.status_code, spent.json()["code"]) == (400, "invalid_sign_in_code")


VERIFIER = "an-apps-own-verifier-" + "v" * 30  # RFC 7636: 43-128 characters
CHALLENGE = "pQg21Gf50ClAUlUIUgweS99jtn8-UVsr_PGlS8vyNGU"  # BASE64URL(SHA256(VERIFIER))


def test_an_app_on_another_origin_binds_its_code_with_a_verifier(
    client: Client, container: Container
) -> None:
    """An app whose exchange does not carry the browser's cookie (another origin) gave
    start an S256 code_challenge: its verifier stands for the cookie, and only its own."""
    from application.factors.external_sign_in import code_challenge

    assert code_challenge(VERIFIER) == CHALLENGE

    def code_at_app() -> str:
        code = code_of(back(client, at_provider(client, "alice-sub", code_challenge=CHALLENGE)))
        client.cookies.clear()  # the app's own origin holds none of tessera's cookies
        return code

    signed_in = client.post(
        "/api/auth/oidc/exchange", json={"code": code_at_app(), "code_verifier": VERIFIER}
    )
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["access_token"]

    for body in ({}, {"code_verifier": "w" * 52}):  # none, or another app's
        refused = client.post("/api/auth/oidc/exchange", json={"code": code_at_app(), **body})
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_sign_in_code")


@sqlite_only
@pytest.mark.parametrize("challenge", ["short", "=" * 43, CHALLENGE + "A"])
def test_a_malformed_code_challenge_is_refused(
    client: Client, container: Container, challenge: str
) -> None:
    refused = start(client, code_challenge=challenge)
    assert (refused.status_code, refused.json()["code"]) == (400, "validation_failed")


@sqlite_only
def test_a_declined_consent_is_a_4xx(client: Client, container: Container) -> None:
    started = start(client)
    declined = sign_in(started.headers["location"], "alice-sub", approve=False)
    before = event_count(container)
    refused = back(client, declined)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_identity_response")
    assert event_count(container) == before


@sqlite_only
def test_a_provider_that_is_down_is_a_quick_502(
    client: Client, container: Container, idp: OidcProvider
) -> None:
    callback = at_provider(client, "alice-sub")
    with idp.down():
        refused = back(client, callback)
    assert (refused.status_code, refused.json()["code"]) == (502, "provider_unavailable")


def test_identities_are_sealed_in_events(client: Client, container: Container) -> None:
    signed_in(client, "alice-sub")
    raw = b"".join(
        bytes(n.state) for n in container.log.recorder.select_notifications(start=1, limit=1000)
    )
    assert b"alice-sub" not in raw and b"alice@example.com" not in raw
    found = container.log.identity_claim("idp", "alice-sub")
    assert found is not None and isinstance(found.account_id, UUID)
