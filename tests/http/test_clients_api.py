"""/api/admin/clients through the real app: admins only, bad input refused with nothing
changed, and a client's secret in the one answer that makes it and nowhere else."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from interfaces.container import Container
from tests.conftest import event_count
from tests.http.test_api import Client, bearer, log_in, register_and_verify
from tests.http.test_read_side_api import with_role

WIKI = {
    "name": "Wiki",
    "redirect_uris": ["https://wiki.example/callback", "http://127.0.0.1/callback"],
    "post_logout_redirect_uris": ["https://wiki.example/"],
    "grant_types": ["authorization_code", "refresh_token"],
    "scopes": ["openid", "profile", "email", "offline_access", "wiki:edit"],
}


def test_an_admin_registers_reads_changes_rotates_and_removes_a_client(
    client: Client, container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = bearer(with_role(client, container, "root", "admin"))
    made = client.post("/api/admin/clients", json=WIKI, headers=admin)
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    client_id, secret = made.json()["client_id"], made.json()["client_secret"]
    assert len(secret) >= 43

    read = client.get(f"/api/admin/clients/{client_id}", headers=admin)
    assert read.status_code == 200, read.text
    shown = read.json()
    assert shown["name"] == "Wiki" and shown["public"] is False and shown["trusted"] is False
    assert shown["redirect_uris"] == WIKI["redirect_uris"]
    assert shown["web_origins"] == ["https://wiki.example", "http://127.0.0.1"]
    assert shown["id_token_signed_response_alg"] == "RS256"
    listed = client.get("/api/admin/clients", headers=admin)
    assert [c["client_id"] for c in listed.json()] == [client_id]

    changed = client.patch(
        f"/api/admin/clients/{client_id}",
        json={"trusted": True, "resources": ["https://api.wiki.example/"]},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["trusted"] is True
    assert changed.json()["resources"] == ["https://api.wiki.example/"]
    assert changed.json()["redirect_uris"] == WIKI["redirect_uris"]  # untouched

    rotated = client.post(f"/api/admin/clients/{client_id}/secret", headers=admin)
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    new_secret = rotated.json()["client_secret"]
    assert new_secret != secret
    container.clients.authenticate(client_id, new_secret)
    container.clients.authenticate(client_id, secret)  # within the overlap
    assert client.get(f"/api/admin/clients/{client_id}", headers=admin).json()[
        "previous_secret_valid_until"
    ]

    reads = [
        client.get(f"/api/admin/clients/{client_id}", headers=admin).text,
        client.get("/api/admin/clients", headers=admin).text,
        changed.text,
    ]
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for plain in (secret, new_secret):
        assert all(plain not in text for text in reads)
        assert plain not in logged

    removed = client.delete(f"/api/admin/clients/{client_id}", headers=admin)
    assert removed.status_code == 204, removed.text
    gone = client.get(f"/api/admin/clients/{client_id}", headers=admin)
    assert gone.status_code == 404 and gone.json()["code"] == "client_not_found"
    assert client.get("/api/admin/clients", headers=admin).json() == []
    again = client.delete(f"/api/admin/clients/{client_id}", headers=admin)
    assert again.status_code == 404


def test_a_public_client_gets_no_secret(client: Client, container: Container) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    spa = {"name": "SPA", "redirect_uris": ["https://spa.example/cb"], "public": True}
    made = client.post("/api/admin/clients", json=spa, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["client_secret"] is None
    client_id = made.json()["client_id"]
    rotated = client.post(f"/api/admin/clients/{client_id}/secret", headers=admin)
    assert rotated.status_code == 400, rotated.text


def test_only_admins_manage_clients(client: Client, container: Container) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    client_id = client.post("/api/admin/clients", json=WIKI, headers=admin).json()["client_id"]
    register_and_verify(client, container, "ada")
    person = bearer(log_in(client, "ada"))
    auditor = bearer(with_role(client, container, "eve", "auditor"))
    before = event_count(container)
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/api/admin/clients", WIKI),
        ("GET", "/api/admin/clients", None),
        ("GET", f"/api/admin/clients/{client_id}", None),
        ("PATCH", f"/api/admin/clients/{client_id}", {"trusted": True}),
        ("POST", f"/api/admin/clients/{client_id}/secret", None),
        ("DELETE", f"/api/admin/clients/{client_id}", None),
    ]
    for method, path, body in calls:
        for headers, status in ((person, 403), (auditor, 403), ({}, 401)):
            answer = client.request(method, path, json=body, headers=headers)
            assert answer.status_code == status, (method, path, answer.text)
            assert "client_secret" not in answer.text
    assert event_count(container) == before


BAD_REGISTRATIONS: list[dict[str, Any]] = [
    {**WIKI, "redirect_uris": ["http://wiki.example/callback"]},  # http off loopback
    {**WIKI, "redirect_uris": ["https://wiki.example/cb#frag"]},
    {**WIKI, "redirect_uris": ["https://wiki.example@evil.example/cb"]},
    {**WIKI, "redirect_uris": ["http://localhost/cb"]},
    {**WIKI, "redirect_uris": ["javascript:alert(1)"]},
    {**WIKI, "redirect_uris": ["https://wiki.example/\u0000"]},
    {**WIKI, "redirect_uris": []},  # a code flow with nowhere to return
    {**WIKI, "redirect_uris": ["https://wiki.example/" + "a" * 2100]},
    {**WIKI, "redirect_uris": [f"https://wiki.example/{n}" for n in range(21)]},
    {**WIKI, "grant_types": ["implicit"]},
    {**WIKI, "grant_types": ["password"]},
    {**WIKI, "grant_types": ["client_credentials"], "public": True},
    {**WIKI, "scopes": ["openid profile"]},
    {**WIKI, "id_token_signed_response_alg": "none"},
    {**WIKI, "id_token_signed_response_alg": "HS256"},
    {**WIKI, "web_origins": ["*"]},
    {**WIKI, "resources": ["https://api.example/#x"]},
    {**WIKI, "client_secret": "chosen-by-me"},  # unknown field: a secret is never chosen
    {**WIKI, "name": ""},
    {**WIKI, "name": "a\nb"},
    {"redirect_uris": WIKI["redirect_uris"]},  # no name
    {**WIKI, "public": "false"},  # the schema's types exactly: no "truthy" strings
    {**WIKI, "trusted": 1},
    {**WIKI, "redirect_uris": "https://wiki.example/callback"},  # a string, not a list
]


def test_bad_registrations_are_refused_and_change_nothing(
    client: Client, container: Container
) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    for body in BAD_REGISTRATIONS:
        before = event_count(container)
        answer = client.post("/api/admin/clients", json=body, headers=admin)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), body
        assert event_count(container) == before, body
    assert client.get("/api/admin/clients", headers=admin).json() == []


def test_bad_changes_are_refused_and_change_nothing(client: Client, container: Container) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    confidential = client.post("/api/admin/clients", json=WIKI, headers=admin).json()
    spa = {"name": "SPA", "redirect_uris": ["https://spa.example/cb"], "public": True}
    public = client.post("/api/admin/clients", json=spa, headers=admin).json()
    shown = client.get(f"/api/admin/clients/{confidential['client_id']}", headers=admin).json()
    before = event_count(container)
    for client_id, changes in [
        # A public client made confidential would have no secret; the other way round, a
        # confidential one would stop proving who it is.
        (public["client_id"], {"public": False}),
        (confidential["client_id"], {"public": True}),
        (confidential["client_id"], {"redirect_uris": ["https://evil.example/cb#"]}),
        (confidential["client_id"], {"redirect_uris": ["http://evil.example/cb"]}),
        (confidential["client_id"], {"redirect_uris": []}),
        (confidential["client_id"], {"grant_types": ["refresh_token"]}),
        (confidential["client_id"], {"secret_digest": "0" * 64}),
        (confidential["client_id"], {"client_secret": "mine"}),
        (public["client_id"], {"grant_types": ["authorization_code", "client_credentials"]}),
    ]:
        answer = client.patch(f"/api/admin/clients/{client_id}", json=changes, headers=admin)
        assert answer.status_code == 400, (changes, answer.text)
    assert event_count(container) == before
    assert (
        client.get(f"/api/admin/clients/{confidential['client_id']}", headers=admin).json() == shown
    )
    container.clients.authenticate(confidential["client_id"], confidential["client_secret"])
    container.clients.authenticate(public["client_id"], None)


def test_unknown_clients_are_404(client: Client, container: Container) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    unknown = "00000000-0000-4000-8000-000000000000"
    directory = "6f0c6a52-1c1e-5b8e-9a57-6f3d2c4b7a10"  # an aggregate, but not a client
    for client_id in (unknown, directory):
        for method, path in [
            ("GET", f"/api/admin/clients/{client_id}"),
            ("PATCH", f"/api/admin/clients/{client_id}"),
            ("POST", f"/api/admin/clients/{client_id}/secret"),
            ("DELETE", f"/api/admin/clients/{client_id}"),
        ]:
            body = {"trusted": True} if method == "PATCH" else None
            answer = client.request(method, path, json=body, headers=admin)
            assert answer.status_code == 404, (method, path, answer.text)
    assert client.get("/api/admin/clients/not-a-uuid", headers=admin).status_code in (400, 404)
