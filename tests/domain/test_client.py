"""OpenID Provider clients: what may be registered, how redirect URIs match, how a secret is
checked and rotated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.client import SECRET_OVERLAP, ClientSettings, OAuthClient, redirect_uri_matches
from domain.errors import ClientNotFound, Invalid, InvalidClient

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEB = "https://app.example/callback"


def settings(**changes: Any) -> ClientSettings:
    return ClientSettings(**{"name": "App", "redirect_uris": (WEB,), **changes})


def registered(**changes: Any) -> OAuthClient:
    public = changes.get("public", False)
    return OAuthClient.register(
        uuid4(), settings(**changes), None if public else "digest-1", "account:admin", T0
    )


def refused_fields(make: Any) -> set[str]:
    with pytest.raises(Invalid) as refused:
        make()
    return {error.field.split("[")[0] for error in refused.value.errors}


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/callback",
        "https://app.example:8443/cb?tenant=1",
        "http://127.0.0.1/callback",
        "http://127.0.0.1:8765/callback",
        "http://[::1]/callback",
        "https://localhost/callback",
    ],
)
def test_redirect_uris_that_may_be_registered(uri: str) -> None:
    assert settings(redirect_uris=(uri,)).checked().redirect_uris == (uri,)


@pytest.mark.parametrize(
    "uri",
    [
        "/callback",  # relative
        "app.example/callback",  # no scheme
        "https://app.example/cb#top",  # a fragment (RFC 6749, 3.1.2)
        "https://app.example/cb#",  # an empty fragment is a fragment
        "http://app.example/callback",  # plain http off loopback
        "http://localhost/callback",  # loopback by name: IP literals only (RFC 8252, 8.3)
        "http://127.0.0.1.evil.example/cb",
        "https://good.example@evil.example/cb",  # userinfo
        "javascript:alert(1)",
        "data:text/html,hi",
        "com.example.app:/callback",  # private-use schemes: not yet
        "https://app.example/call back",
        "https://app.example/cb\n",
        "https://app.example:99999/cb",  # no such port
        "https://",
        "https://app.example/" + "a" * 2000,
    ],
)
def test_redirect_uris_refused(uri: str) -> None:
    assert refused_fields(lambda: settings(redirect_uris=(uri,)).checked()) == {"redirect_uris"}
    assert refused_fields(lambda: settings(post_logout_redirect_uris=(uri,)).checked()) == {
        "post_logout_redirect_uris"
    }


def test_loopback_redirect_uris_match_on_any_port_and_nothing_else_does() -> None:
    native = ["http://127.0.0.1/callback", "http://[::1]/cb"]
    assert redirect_uri_matches(native, "http://127.0.0.1/callback")
    assert redirect_uri_matches(native, "http://127.0.0.1:51234/callback")
    assert redirect_uri_matches(native, "http://[::1]:1/cb")
    for near_miss in [
        "http://127.0.0.1:51234/callback/",  # trailing slash
        "http://127.0.0.1:51234/Callback",  # case of the path
        "HTTP://127.0.0.1:51234/callback",  # case of the scheme
        "http://127.0.0.1:51234/callback?x=1",  # an extra query
        "http://127.0.0.1:51234/callback#x",
        "http://127.0.0.1.evil.example/callback",
        "http://127.0.0.1.evil.example:80/callback",
        "http://evil@127.0.0.1/callback",
        "http://127.0.0.1@evil.example/callback",
        "https://127.0.0.1/callback",  # another scheme
        "http://127.0.0.2/callback",
        "http://localhost:51234/callback",
        "http://[::1]:51234/callback",  # the other loopback address, not registered for this path
        "http://127.0.0.1:0/callback",
        "http://127.0.0.1:65536/callback",
        "http://127.0.0.1:51234",
    ]:
        assert not redirect_uri_matches(native, near_miss), near_miss


def test_other_redirect_uris_match_exactly() -> None:
    web = [WEB, "https://app.example/cb?tenant=1"]
    assert redirect_uri_matches(web, WEB)
    assert redirect_uri_matches(web, "https://app.example/cb?tenant=1")
    for near_miss in [
        WEB + "/",
        "https://App.example/callback",
        "https://app.example/Callback",
        WEB + "?extra=1",
        "https://app.example/cb?tenant=1&tenant=2",
        "https://app.example/cb?tenant=2",
        "https://app.example:443/callback",  # the same place, but not the same string
        "https://app.example:8443/callback",
        "https://app.example@evil.example/callback",
        "https://good@app.example/callback",
        "https://app.example.evil.example/callback",
        "http://app.example/callback",
        WEB + "#",
        WEB + "%00",
        " " + WEB,
        "",
    ]:
        assert not redirect_uri_matches(web, near_miss), near_miss


def test_grants_that_do_not_go_together_are_refused() -> None:
    def check(**changes: Any) -> set[str]:
        return refused_fields(lambda: settings(**changes).checked())

    assert check(grant_types=()) == {"grant_types"}
    assert check(grant_types=("implicit",)) == {"grant_types"}
    assert check(grant_types=("password",)) == {"grant_types"}
    assert check(grant_types=("refresh_token",)) == {"grant_types"}  # only with a code
    assert check(grant_types=("client_credentials",), public=True) == {"grant_types"}
    assert check(redirect_uris=()) == {"redirect_uris"}  # a code needs somewhere to go
    # offline_access asks for a refresh token, which this client would not be given.
    assert check(scopes=("openid", "offline_access")) == {"scopes"}
    # A service with client_credentials alone needs no redirect URI.
    assert ClientSettings(name="Service", grant_types=("client_credentials",)).checked()


def test_scopes_names_algorithms_resources_and_origins() -> None:
    ok = settings(
        scopes=("openid", "api:read", "api:read", "orders.write"),
        id_token_signed_response_alg="EdDSA",
        resources=("https://api.example/", "urn:example:api"),
        web_origins=("https://app.example", "http://127.0.0.1:3000"),
    ).checked()
    assert ok.scopes == ("openid", "api:read", "orders.write")  # duplicates dropped
    assert ok.allowed_origins == ("https://app.example", "http://127.0.0.1:3000")

    def check(**changes: Any) -> set[str]:
        return refused_fields(lambda: settings(**changes).checked())

    assert check(scopes=("openid profile",)) == {"scopes"}  # one token each
    assert check(scopes=('api"read',)) == {"scopes"}
    assert check(scopes=("a" * 65,)) == {"scopes"}
    assert check(id_token_signed_response_alg="none") == {"id_token_signed_response_alg"}
    assert check(id_token_signed_response_alg="HS256") == {"id_token_signed_response_alg"}
    assert check(resources=("https://api.example/#x",)) == {"resources"}
    assert check(resources=("api",)) == {"resources"}
    assert check(web_origins=("https://app.example/",)) == {"web_origins"}
    assert check(web_origins=("*",)) == {"web_origins"}
    assert check(web_origins=("http://app.example",)) == {"web_origins"}
    assert check(name="  ") == {"name"}
    assert check(name="a\u202eb") == {"name"}  # a right-to-left override hides the real name
    assert check(name="x" * 101) == {"name"}


def test_web_origins_default_to_the_redirect_uris_origins() -> None:
    ok = settings(redirect_uris=(WEB, "https://app.example/other", "http://127.0.0.1/cb"))
    assert ok.checked().allowed_origins == ("https://app.example", "http://127.0.0.1")


def test_the_secret_works_and_nothing_else_does() -> None:
    client = registered()
    client.authenticate("digest-1", T0)
    for wrong in ("digest-2", "", None, "DIGEST-1"):
        with pytest.raises(InvalidClient):
            client.authenticate(wrong, T0)


def test_a_rotated_secret_keeps_working_for_the_overlap_then_only_the_new_one_does() -> None:
    client = registered()
    client.rotate_secret("digest-2", "account:admin", T0)
    just_before = T0 + SECRET_OVERLAP - timedelta(seconds=1)
    client.authenticate("digest-2", just_before)
    client.authenticate("digest-1", just_before)
    with pytest.raises(InvalidClient):
        client.authenticate("digest-1", T0 + SECRET_OVERLAP)
    client.authenticate("digest-2", T0 + SECRET_OVERLAP)
    # A second rotation within the overlap ends the oldest at once.
    client.rotate_secret("digest-3", "account:admin", T0 + timedelta(hours=1))
    with pytest.raises(InvalidClient):
        client.authenticate("digest-1", T0 + timedelta(hours=1))
    client.authenticate("digest-2", T0 + timedelta(hours=2))


def test_a_public_client_has_no_secret_and_none_may_be_presented_for_it() -> None:
    client = registered(public=True)
    client.authenticate(None, T0)
    with pytest.raises(InvalidClient):
        client.authenticate("digest-1", T0)
    with pytest.raises(Invalid):
        client.rotate_secret("digest-2", "account:admin", T0)
    with pytest.raises(ValueError):
        OAuthClient.register(uuid4(), settings(public=True), "digest", "account:admin", T0)
    with pytest.raises(ValueError):
        OAuthClient.register(uuid4(), settings(), None, "account:admin", T0)


def test_the_kind_of_client_is_fixed_and_updates_are_checked() -> None:
    for client in (registered(), registered(public=True)):
        public = client.settings.public
        with pytest.raises(Invalid):
            client.update({"public": not public}, "account:admin", T0)
        assert client.settings.public is public
    client = registered()
    with pytest.raises(Invalid):
        client.update({"redirect_uris": ("http://evil.example/cb",)}, "account:admin", T0)
    with pytest.raises(Invalid):
        client.update({"secret_digest": "mine"}, "account:admin", T0)
    assert client.settings.redirect_uris == (WEB,)
    assert client.update({"public": False, "trusted": True}, "account:admin", T0)
    assert not client.update({"trusted": True}, "account:admin", T0)  # nothing to change
    assert [type(e).__name__ for e in client.collect_events()] == [
        "ClientRegistered",
        "ClientUpdated",
    ]


def test_a_removed_client_proves_nothing_and_changes_no_more() -> None:
    client = registered()
    client.remove("account:admin", T0)
    with pytest.raises(InvalidClient):
        client.authenticate("digest-1", T0)
    for change in (
        lambda: client.update({"trusted": True}, "account:admin", T0),
        lambda: client.rotate_secret("digest-2", "account:admin", T0),
        lambda: client.remove("account:admin", T0),
    ):
        with pytest.raises(ClientNotFound):
            change()


def test_the_events_carry_the_operator_and_the_digest_never_a_secret() -> None:
    client = registered()
    client.rotate_secret("digest-2", "account:admin", T0)
    for recorded in client.collect_events():
        assert recorded.operator == "account:admin"
    assert client.secret_digest == "digest-2"
