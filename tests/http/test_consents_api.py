"""The person's apps with access, through the real app on both stores: listed at
GET /api/users/me/consents and withdrawn at DELETE …/{client_id} with the first-party API's own
authentication; listed and withdrawn on the account page too, with its CSRF-protected form."""

from __future__ import annotations

from uuid import UUID

from application.views import Client as Where
from domain.client import ClientSettings
from interfaces.container import Container
from tests.conftest import event_count
from tests.http.test_api import Client, bearer, log_in, register_and_verify
from tests.http.test_pages import csrf_token, sign_in

WIKI = ClientSettings(
    name="Team wiki",
    redirect_uris=("https://wiki.example/callback",),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "profile", "email", "offline_access"),
)
HERE = Where(ip="192.0.2.7", user_agent="test")


def account_id(container: Container, login: str = "ada") -> UUID:
    account = container.log.account_for_login(login)
    assert account is not None
    return UUID(str(account.id))


def consenting(container: Container, login: str = "ada", scopes: tuple[str, ...] = ()) -> str:
    """A registered app the person let have `scopes` (openid and profile by default)."""
    client_id = container.clients.register(WIKI, "test").client_id
    granted = list(scopes or ("openid", "profile"))
    container.consents.grant(account_id(container, login), client_id, granted, HERE)
    return client_id


def test_my_consents_are_listed_and_revoked(client: Client, container: Container) -> None:
    register_and_verify(client, container)
    me = bearer(log_in(client))
    assert client.get("/api/users/me/consents", headers=me).json() == []
    client_id = consenting(container)

    listed = client.get("/api/users/me/consents", headers=me)
    assert listed.status_code == 200, listed.text
    [consent] = listed.json()
    assert consent["client_id"] == client_id
    assert consent["client_name"] == "Team wiki"
    assert consent["scopes"] == ["openid", "profile"]
    assert consent["granted_at"]

    revoked = client.delete(f"/api/users/me/consents/{client_id}", headers=me)
    assert revoked.status_code == 204, revoked.text
    assert client.get("/api/users/me/consents", headers=me).json() == []
    assert container.consents.granted(account_id(container), client_id) == frozenset()
    events = container.log.repository.event_store.get(account_id(container))
    assert [type(e).__name__ for e in events].count("ConsentRevoked") == 1


def test_revoking_a_consent_there_is_not_is_404_and_changes_nothing(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container)
    register_and_verify(client, container, "bob")
    me = bearer(log_in(client))
    bobs = consenting(container, "bob")  # an app Bob let in; Ada never did
    before = event_count(container)
    for client_id in (bobs, "not-a-client", "6f0c6a52-1c1e-5b8e-9a57-6f3d2c4b7a10", "%00"):
        answer = client.delete(f"/api/users/me/consents/{client_id}", headers=me)
        assert answer.status_code == 404, (client_id, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] in ("consent_not_found", "not_found")
    assert event_count(container) == before
    assert container.consents.granted(account_id(container, "bob"), bobs) == {"openid", "profile"}


def test_consents_need_a_first_party_token(client: Client, container: Container) -> None:
    register_and_verify(client, container)
    client_id = consenting(container)
    # An app's own token (here a client_credentials one) is never a first-party session.
    machine = container.clients.register(
        ClientSettings(name="Robot", grant_types=("client_credentials",), scopes=("x:read",)),
        "test",
    )
    assert machine.client_secret is not None
    issued = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(machine.client_id, machine.client_secret),
    )
    assert issued.status_code == 200, issued.text
    for headers in ({}, {"Authorization": "Bearer x"}, bearer(issued.json())):
        assert client.get("/api/users/me/consents", headers=headers).status_code == 401
        answer = client.delete(f"/api/users/me/consents/{client_id}", headers=headers)
        assert answer.status_code == 401
    assert container.consents.granted(account_id(container), client_id) == {"openid", "profile"}


def test_the_consent_schemas_are_in_the_openapi_document(client: Client) -> None:
    document = client.get("/schema/openapi.json").json()
    paths = document["paths"]
    listed = paths["/api/users/me/consents"]["get"]["responses"]["200"]
    assert "ConsentView" in str(listed)
    schema = document["components"]["schemas"]["ConsentView"]
    assert set(schema["properties"]) == {"client_id", "client_name", "scopes", "granted_at"}
    revoke = paths["/api/users/me/consents/{client_id}"]["delete"]["responses"]
    assert {"204", "401", "404"} <= set(revoke)


def test_the_account_page_lists_apps_with_access_and_revokes_one(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    register_and_verify(client, container)
    token = sign_in(client)
    assert "Apps with access" not in client.get("/account").text
    client_id = consenting(container)
    page = client.get("/account").text
    assert "Apps with access" in page and "Team wiki" in page
    assert "See your username and display name" in page  # the scopes in plain words
    assert f'name="client_id" value="{client_id}"' in page

    # Without the page's CSRF token, or from another site: refused, nothing changes.
    before = event_count(container)
    forged = client.post("/account/consents/revoke", data={"client_id": client_id})
    assert forged.status_code == 403
    cross = client.post(
        "/account/consents/revoke",
        data={"client_id": client_id, "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert event_count(container) == before

    token = csrf_token(page)
    revoked = client.post(
        "/account/consents/revoke", data={"client_id": client_id, "csrf_token": token}
    )
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/account?done=consent-revoked"
    after = client.get("/account?done=consent-revoked").text
    assert "no longer has access" in after and "Team wiki" not in after
    assert container.consents.granted(account_id(container), client_id) == frozenset()

    # Again: there is none, and the page says so.
    again = client.post(
        "/account/consents/revoke",
        data={"client_id": client_id, "csrf_token": csrf_token(after)},
    )
    assert again.status_code == 404
    assert "no access to this app" in again.text


def test_my_data_export_names_the_apps_i_let_in(client: Client, container: Container) -> None:
    register_and_verify(client, container)
    me = bearer(log_in(client))
    client_id = consenting(container, scopes=("openid", "email"))
    exported = client.get("/api/users/me/export", headers=me)
    assert exported.status_code == 200, exported.text
    [consent] = exported.json()["account"]["consents"]
    assert (consent["client_id"], consent["scopes"]) == (client_id, ["email", "openid"])
    assert consent["granted_at"]
    assert "ConsentGranted" in {event["type"] for event in exported.json()["events"]}
