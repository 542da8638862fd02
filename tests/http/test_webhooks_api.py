"""/api/admin/webhooks through the real app: admins only, each bad input refused with its own
problem code and nothing changed, and a secret in the one answer that makes it and nowhere else
(not in reads, logs, or the event store)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from interfaces.container import Container
from tests.conftest import event_count, run_projections
from tests.http.test_api import Client, bearer, log_in, register_and_verify
from tests.http.test_read_side_api import with_role

CRM = {"url": "https://crm.example/hooks/tessera", "events": ["account.registered"]}
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def stored_bytes(container: Container) -> bytes:
    notifications = container.log.recorder.select_notifications(start=1, limit=100_000)
    return b"\n".join(n.state for n in notifications)


def test_an_admin_creates_reads_changes_rotates_and_removes_an_endpoint(
    client: Client, container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = bearer(with_role(client, container, "root", "admin"))
    made = client.post(
        "/api/admin/webhooks",
        json={**CRM, "description": " CRM ", "include_personal": True},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    assert set(made.json()) == {"id", "secret"}
    webhook_id, secret = made.json()["id"], made.json()["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32

    read = client.get(f"/api/admin/webhooks/{webhook_id}", headers=admin)
    assert read.status_code == 200, read.text
    shown = read.json()
    assert shown["url"] == CRM["url"] and shown["events"] == CRM["events"]
    assert shown["description"] == "CRM" and shown["include_personal"] is True
    assert shown["enabled"] is True and shown["disabled_reason"] is None
    listed = client.get("/api/admin/webhooks", headers=admin)
    assert [w["id"] for w in listed.json()] == [webhook_id]

    changed = client.patch(
        f"/api/admin/webhooks/{webhook_id}",
        json={"events": ["account.registered", "account.erased"], "enabled": False},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["events"] == ["account.registered", "account.erased"]
    assert changed.json()["enabled"] is False
    assert changed.json()["disabled_reason"] == "operator"
    assert changed.json()["url"] == CRM["url"]  # untouched

    rotated = client.post(f"/api/admin/webhooks/{webhook_id}/secret", headers=admin)
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    new_secret = rotated.json()["secret"]
    assert new_secret != secret and new_secret.startswith("whsec_")
    after = client.get(f"/api/admin/webhooks/{webhook_id}", headers=admin).json()
    assert after["previous_secret_valid_until"] is not None

    deliveries = client.get(f"/api/admin/webhooks/{webhook_id}/deliveries", headers=admin)
    assert deliveries.status_code == 200 and deliveries.json() == []

    reads = [
        client.get(f"/api/admin/webhooks/{webhook_id}", headers=admin).text,
        client.get("/api/admin/webhooks", headers=admin).text,
        changed.text,
    ]
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    stored = stored_bytes(container)
    for plain in (secret, new_secret):
        assert all(plain not in text for text in reads)
        assert plain not in logged
        # Sealed in the event store: neither the secret nor its key's base64 is there.
        assert plain.encode() not in stored and plain[6:].encode() not in stored

    removed = client.delete(f"/api/admin/webhooks/{webhook_id}", headers=admin)
    assert removed.status_code == 204, removed.text
    gone = client.get(f"/api/admin/webhooks/{webhook_id}", headers=admin)
    assert gone.status_code == 404 and gone.json()["code"] == "webhook_not_found"
    assert client.get("/api/admin/webhooks", headers=admin).json() == []


def test_only_admins_manage_webhooks(client: Client, container: Container) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    webhook_id = client.post("/api/admin/webhooks", json=CRM, headers=admin).json()["id"]
    register_and_verify(client, container, "ada")
    person = bearer(log_in(client, "ada"))
    auditor = bearer(with_role(client, container, "eve", "auditor"))
    before = event_count(container)
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/api/admin/webhooks", CRM),
        ("GET", "/api/admin/webhooks", None),
        ("GET", f"/api/admin/webhooks/{webhook_id}", None),
        ("PATCH", f"/api/admin/webhooks/{webhook_id}", {"description": "x"}),
        ("POST", f"/api/admin/webhooks/{webhook_id}/secret", None),
        ("POST", f"/api/admin/webhooks/{webhook_id}/replay", {"since": 0}),
        ("GET", f"/api/admin/webhooks/{webhook_id}/deliveries", None),
        ("DELETE", f"/api/admin/webhooks/{webhook_id}", None),
    ]
    for method, path, body in calls:
        for headers, status in ((person, 403), (auditor, 403), ({}, 401)):
            answer = client.request(method, path, json=body, headers=headers)
            assert answer.status_code == status, (method, path, answer.text)
            assert "whsec_" not in answer.text
    assert event_count(container) == before


BAD_ENDPOINTS: list[tuple[dict[str, Any], str]] = [
    ({**CRM, "url": "http://crm.example/hooks"}, "webhook_url_invalid"),
    ({**CRM, "url": "http://127.0.0.1:9000/hooks"}, "webhook_url_invalid"),
    ({**CRM, "url": "/hooks"}, "webhook_url_invalid"),
    ({**CRM, "url": "crm.example/hooks"}, "webhook_url_invalid"),
    ({**CRM, "url": "https://user:pw@crm.example/hooks"}, "webhook_url_invalid"),
    ({**CRM, "url": "https://crm.example/hooks#x"}, "webhook_url_invalid"),
    ({**CRM, "url": "file:///etc/passwd"}, "webhook_url_invalid"),
    ({**CRM, "url": "https://10.0.0.1/hooks"}, "webhook_target_private"),
    ({**CRM, "url": "https://169.254.169.254/latest/meta-data"}, "webhook_target_private"),
    ({**CRM, "url": "https://[::1]/hooks"}, "webhook_target_private"),
    ({**CRM, "url": "https://[::ffff:127.0.0.1]/hooks"}, "webhook_target_private"),
    ({**CRM, "events": ["account.Registered"]}, "unknown_event_type"),
    ({**CRM, "events": ["account.registered", "AccountErased"]}, "unknown_event_type"),
    ({**CRM, "events": ["account registered"]}, "validation_failed"),
    ({**CRM, "events": ["account.password_reset"]}, "unknown_event_type"),
    ({**CRM, "events": []}, "empty_event_list"),
    ({"url": CRM["url"]}, "validation_failed"),  # no events
    ({**CRM, "events": "account.registered"}, "validation_failed"),  # not a list
    ({**CRM, "secret": "whsec_chosenbyme"}, "validation_failed"),  # never chosen
    ({**CRM, "include_personal": "true"}, "validation_failed"),
    ({**CRM, "description": "a\nb"}, "validation_failed"),
    ({**CRM, "url": "https://crm.example/" + "a" * 2100}, "validation_failed"),
]


def test_bad_endpoints_are_refused_with_their_code_and_change_nothing(
    client: Client, container: Container
) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    for body, code in BAD_ENDPOINTS:
        before = event_count(container)
        answer = client.post("/api/admin/webhooks", json=body, headers=admin)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), body
        assert answer.json()["code"] == code, body
        assert event_count(container) == before, body
    assert client.get("/api/admin/webhooks", headers=admin).json() == []


def test_bad_changes_and_replays_are_refused_and_change_nothing(
    client: Client, container: Container
) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    webhook_id = client.post("/api/admin/webhooks", json=CRM, headers=admin).json()["id"]
    shown = client.get(f"/api/admin/webhooks/{webhook_id}", headers=admin).json()
    before = event_count(container)
    for changes, code in [
        ({"url": "http://crm.example/"}, "webhook_url_invalid"),
        ({"url": "https://192.168.0.1/"}, "webhook_target_private"),
        ({"events": []}, "empty_event_list"),
        ({"events": ["nope"]}, "unknown_event_type"),
        ({"sealed_secret": "x"}, "validation_failed"),
        ({"enabled": "yes"}, "validation_failed"),
    ]:
        answer = client.patch(f"/api/admin/webhooks/{webhook_id}", json=changes, headers=admin)
        assert answer.status_code == 400, (changes, answer.text)
        assert answer.json()["code"] == code, changes
    end = event_count(container)
    for since, code in [
        (end + 1, "replay_past_end"),
        ("2999-01-01T00:00:00Z", "replay_past_end"),
        ("2026-01-01T00:00:00", "validation_failed"),  # an instant needs its offset
        ("yesterday", "validation_failed"),
        (-1, "validation_failed"),
        (2**63, "validation_failed"),
    ]:
        answer = client.post(
            f"/api/admin/webhooks/{webhook_id}/replay", json={"since": since}, headers=admin
        )
        assert answer.status_code == 400, (since, answer.text)
        assert answer.json()["code"] == code, since
    assert event_count(container) == before
    assert client.get(f"/api/admin/webhooks/{webhook_id}", headers=admin).json() == shown


def test_unknown_webhooks_are_404(client: Client, container: Container) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    directory = "2b7f4f8e-9d3c-5a51-8e0b-3f6a1c9d7e24"  # an aggregate, but not an endpoint
    account = str(container.log.account_named("root").id)  # type: ignore[union-attr]
    for webhook_id in (UNKNOWN, directory, account):
        for method, path, body in [
            ("GET", f"/api/admin/webhooks/{webhook_id}", None),
            ("PATCH", f"/api/admin/webhooks/{webhook_id}", {"description": "x"}),
            ("POST", f"/api/admin/webhooks/{webhook_id}/secret", None),
            ("POST", f"/api/admin/webhooks/{webhook_id}/replay", {"since": 0}),
            ("GET", f"/api/admin/webhooks/{webhook_id}/deliveries", None),
            ("DELETE", f"/api/admin/webhooks/{webhook_id}", None),
        ]:
            answer = client.request(method, path, json=body, headers=admin)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["code"] == "webhook_not_found"


def test_a_replay_queues_every_matching_event_since_a_position_or_an_instant(
    client: Client, container: Container
) -> None:
    admin = bearer(with_role(client, container, "root", "admin"))
    register_and_verify(client, container, "ada")
    run_projections(container)
    body = {"url": "https://crm.example/h", "events": ["account.registered"]}
    webhook_id = client.post("/api/admin/webhooks", json=body, headers=admin).json()["id"]
    replayed = client.post(
        f"/api/admin/webhooks/{webhook_id}/replay", json={"since": 0}, headers=admin
    )
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["since_position"] == 1
    assert replayed.json()["queued"] == 2  # root's registration and ada's
    again = client.post(
        f"/api/admin/webhooks/{webhook_id}/replay",
        json={"since": "2020-01-01T00:00:00+00:00"},
        headers=admin,
    )
    assert again.status_code == 202 and again.json()["queued"] == 2
    listed = client.get(f"/api/admin/webhooks/{webhook_id}/deliveries", headers=admin).json()
    assert len(listed) == 4 and len({d["id"] for d in listed}) == 4  # new ids each replay
    assert {d["replay_id"] for d in listed} == {
        replayed.json()["replay_id"],
        again.json()["replay_id"],
    }
    assert all(d["type"] == "account.registered" for d in listed)
