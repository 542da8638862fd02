"""Sessions, activity, the audit trail and administration over HTTP, roles enforced."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import jwt
import pytest

from domain.account import Account
from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD
from tests.conftest import event_count, run_projections
from tests.http.test_api import Client, bearer, log_in, register_and_verify


def with_role(client: Client, container: Container, who: str, role: str) -> dict[str, Any]:
    """A fresh login after the grant: roles travel in the access token."""
    register_and_verify(client, container, who)
    container.administration.grant_role(who, role, operator="test")
    return log_in(client, who)


def test_my_sessions_list_marks_the_current_one_and_ending_one_kills_its_tokens(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container)
    phone = client.post(
        "/api/auth/login",
        json={"login": "ada", "password": PASSWORD},
        headers={"User-Agent": "Phone/1.0"},
    ).json()
    laptop = client.post(
        "/api/auth/login",
        json={"login": "ada", "password": PASSWORD},
        headers={"User-Agent": "Laptop/2.0"},
    ).json()
    run_projections(container)
    listed = client.get("/api/users/me/sessions", headers=bearer(laptop))
    assert listed.status_code == 200, listed.text
    sessions = {s["user_agent"]: s for s in listed.json()}
    assert set(sessions) == {"Phone/1.0", "Laptop/2.0"}
    assert sessions["Laptop/2.0"]["current"] and not sessions["Phone/1.0"]["current"]
    assert (
        sessions["Phone/1.0"]["id"]
        == jwt.decode(phone["access_token"], options={"verify_signature": False})["sid"]
    )

    ended = client.delete(
        f"/api/users/me/sessions/{sessions['Phone/1.0']['id']}", headers=bearer(laptop)
    )
    assert ended.status_code == 204, ended.text
    assert client.get("/api/users/me", headers=bearer(phone)).status_code == 401  # at once
    refused = client.post("/api/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert refused.status_code == 401
    assert client.get("/api/users/me", headers=bearer(laptop)).status_code == 200
    run_projections(container)
    listed = client.get("/api/users/me/sessions", headers=bearer(laptop)).json()
    assert [s["user_agent"] for s in listed] == ["Laptop/2.0"]


def test_my_sessions_name_the_device_in_words_and_keep_the_header(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container)
    chrome = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Safari/537.36"
    )
    for user_agent in (chrome, "Phone/1.0"):
        client.post(
            "/api/auth/login",
            json={"login": "ada", "password": PASSWORD},
            headers={"User-Agent": user_agent},
        )
    me = log_in(client)
    run_projections(container)
    listed = client.get("/api/users/me/sessions", headers=bearer(me)).json()
    devices = {s["user_agent"]: s["device"] for s in listed}
    assert devices[chrome] == "Chrome 156 on Linux"
    assert devices["Phone/1.0"] is None  # nothing the parser knows: the header says the rest


def test_ending_another_account_s_session_is_404_and_changes_nothing(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container, "ada")
    register_and_verify(client, container, "bob")
    ada, bob = log_in(client, "ada"), log_in(client, "bob")
    bob_session = jwt.decode(bob["access_token"], options={"verify_signature": False})["sid"]
    before = event_count(container)
    refused = client.delete(f"/api/users/me/sessions/{bob_session}", headers=bearer(ada))
    assert refused.status_code == 404
    assert refused.json()["code"] == "session_not_found"
    assert event_count(container) == before
    assert client.get("/api/users/me", headers=bearer(bob)).status_code == 200
    malformed = client.delete("/api/users/me/sessions/not-a-uuid", headers=bearer(ada))
    assert malformed.status_code in (400, 404)
    assert malformed.headers["content-type"].startswith("application/problem+json")


def test_my_activity_is_my_own_security_events_newest_first(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container, "ada")
    register_and_verify(client, container, "bob")
    client.post("/api/auth/login", json={"login": "ada", "password": "not the password"})
    tokens = log_in(client, "ada")
    run_projections(container)
    page = client.get("/api/users/me/activity?limit=2", headers=bearer(tokens))
    assert page.status_code == 200, page.text
    body = page.json()
    assert [e["type"] for e in body["entries"]] == ["SessionStarted", "FailedLoginsReset"]
    rest = client.get(
        f"/api/users/me/activity?cursor={body['next_cursor']}&limit=50", headers=bearer(tokens)
    ).json()
    types = [e["type"] for e in rest["entries"]]
    assert types == ["LoginFailed", "EmailVerified", "EmailVerificationRequested", "Registered"]
    assert rest["next_cursor"] is None
    failure = rest["entries"][0]
    assert failure["ip"] == "testclient" and failure["outcome"] == "failure"
    account_id = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sub"]
    assert {e["account_id"] for e in body["entries"] + rest["entries"]} == {account_id}


def test_an_ordinary_user_gets_403_on_audit_and_admin_apis(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container)
    tokens = log_in(client)
    for path in ("/api/audit/events", "/api/admin/accounts"):
        refused = client.get(path, headers=bearer(tokens))
        assert refused.status_code == 403, path
        assert refused.json()["code"] == "forbidden"
    assert client.get("/api/audit/events").status_code == 401


def test_an_auditor_reads_the_trail_but_cannot_administer(
    client: Client, container: Container
) -> None:
    auditor = with_role(client, container, "ada", "auditor")
    assert jwt.decode(auditor["access_token"], options={"verify_signature": False})["roles"] == [
        "auditor"
    ]
    register_and_verify(client, container, "bob")
    client.post("/api/auth/login", json={"login": "bob", "password": "not the password"})
    run_projections(container)
    failures = client.get("/api/audit/events?type=LoginFailed", headers=bearer(auditor))
    assert failures.status_code == 200, failures.text
    (entry,) = failures.json()["entries"]
    assert entry["type"] == "LoginFailed" and entry["details"] == {
        "factor": "password",
        "command": "login",
    }
    everything = client.get("/api/audit/events?limit=500", headers=bearer(auditor)).json()
    positions = [e["position"] for e in everything["entries"]]
    assert positions == sorted(positions) and len(positions) >= 8
    page = client.get(
        f"/api/audit/events?limit=3&cursor={positions[2]}", headers=bearer(auditor)
    ).json()
    assert [e["position"] for e in page["entries"]] == positions[3:6]
    bob_id = entry["account_id"]
    bob = client.get(f"/api/audit/events?account_id={bob_id}", headers=bearer(auditor)).json()
    assert {e["account_id"] for e in bob["entries"]} == {bob_id}

    bob_lock = client.post(f"/api/admin/accounts/{bob_id}/lock", headers=bearer(auditor))
    assert bob_lock.status_code == 403
    assert client.get("/api/admin/accounts", headers=bearer(auditor)).status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "limit=501",
        "limit=0",
        "cursor=-1",
        "account_id=nope",
        "since=yesterday",
        "type=Login%20Failed",
    ],
)
def test_bad_audit_queries_are_400_problems(
    client: Client, container: Container, query: str
) -> None:
    auditor = with_role(client, container, "ada", "auditor")
    refused = client.get(f"/api/audit/events?{query}", headers=bearer(auditor))
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_an_admin_locks_unlocks_disables_and_enables_with_immediate_effect(
    client: Client, container: Container
) -> None:
    admin = with_role(client, container, "root", "admin")
    register_and_verify(client, container, "bob")
    bob = log_in(client, "bob")
    run_projections(container)
    listed = client.get("/api/admin/accounts?q=BOB", headers=bearer(admin))
    assert listed.status_code == 200, listed.text
    (summary,) = listed.json()["accounts"]
    bob_id = summary["id"]
    assert summary["username"] == "bob" and not summary["locked"]

    assert (
        client.post(f"/api/admin/accounts/{bob_id}/lock", headers=bearer(admin)).status_code == 204
    )
    locked = client.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
    assert locked.status_code == 423 and "retry-after" not in locked.headers
    assert (
        client.post(f"/api/admin/accounts/{bob_id}/unlock", headers=bearer(admin)).status_code
        == 204
    )
    log_in(client, "bob")

    assert (
        client.post(f"/api/admin/accounts/{bob_id}/disable", headers=bearer(admin)).status_code
        == 204
    )
    assert client.get("/api/users/me", headers=bearer(bob)).status_code == 401  # at once
    disabled = client.post("/api/auth/login", json={"login": "bob", "password": PASSWORD})
    assert disabled.status_code == 401 and disabled.json()["code"] == "invalid_credentials"
    assert (
        client.post(f"/api/admin/accounts/{bob_id}/enable", headers=bearer(admin)).status_code
        == 204
    )
    log_in(client, "bob")

    run_projections(container)
    auditor_view = container.read_side.activity(UUID(bob_id), None, 20)
    operators = {e.details.get("operator") for e in auditor_view.entries if "operator" in e.details}
    admin_id = jwt.decode(admin["access_token"], options={"verify_signature": False})["sub"]
    assert operators == {f"account:{admin_id}"}


def test_the_admin_search_is_an_exact_email_or_username_and_the_listing_pages_by_cursor(
    client: Client, container: Container
) -> None:
    admin = with_role(client, container, "root", "admin")
    for who in ("bob", "bobby"):
        register_and_verify(client, container, who)
    run_projections(container)

    def listed(query: str) -> Any:
        response = client.get(f"/api/admin/accounts?{query}", headers=bearer(admin))
        assert response.status_code == 200, response.text
        return response.json()

    for q in ("bob", "Bob", "bob%40example.com", "BOB%40Example.Com"):
        assert [a["username"] for a in listed(f"q={q}")["accounts"]] == ["bob"], q
    for part in ("bo", "obb", "bob%40", "example.com", "%25", "_"):  # a part matches nothing
        assert listed(f"q={part}")["accounts"] == [], part
    pages, query = [], "limit=1"
    while True:
        page = listed(query)
        pages += [a["username"] for a in page["accounts"]]
        if page["next_after"] is None:
            break
        query = f"limit=1&after={page['next_after']}"
    assert pages == ["root", "bob", "bobby"]  # the order they registered in
    for bad in ("bob", "1.5:not-an-id", "1.5:" + "-" * 36, "x" * 65):
        refused = client.get(f"/api/admin/accounts?after={bad}", headers=bearer(admin))
        assert refused.status_code == 400, bad
        assert refused.headers["content-type"].startswith("application/problem+json")
    schema = client.get("/schema/openapi.json").json()
    (q,) = [
        p for p in schema["paths"]["/api/admin/accounts"]["get"]["parameters"] if p["name"] == "q"
    ]
    assert "exact" in q["description"]


def test_admin_lock_until_the_past_is_refused_and_unknown_accounts_are_404(
    client: Client, container: Container
) -> None:
    admin = with_role(client, container, "root", "admin")
    account_id = jwt.decode(admin["access_token"], options={"verify_signature": False})["sub"]
    before = event_count(container)
    past = client.post(
        f"/api/admin/accounts/{account_id}/lock",
        json={"until": "2000-01-01T00:00:00Z"},
        headers=bearer(admin),
    )
    assert past.status_code == 400 and past.json()["errors"][0]["field"] == "until"
    unknown = client.post(
        "/api/admin/accounts/00000000-0000-4000-8000-000000000000/disable", headers=bearer(admin)
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "account_not_found"
    assert event_count(container) == before


def test_revoking_a_role_ends_the_sessions_whose_tokens_carry_it(
    client: Client, container: Container
) -> None:
    auditor = with_role(client, container, "ada", "auditor")
    assert client.get("/api/audit/events", headers=bearer(auditor)).status_code == 200
    container.administration.revoke_role("ada", "auditor", operator="test")
    assert client.get("/api/audit/events", headers=bearer(auditor)).status_code == 401
    again = log_in(client, "ada")
    assert client.get("/api/audit/events", headers=bearer(again)).status_code == 403


def test_an_auditor_sees_an_account_as_it_was_at_any_instant(
    client: Client, container: Container, clock: Any
) -> None:
    auditor = with_role(client, container, "ada", "auditor")
    clock.advance(minutes=5)
    register_and_verify(client, container, "bob")
    bob = log_in(client, "bob")
    bob_id = jwt.decode(bob["access_token"], options={"verify_signature": False})["sub"]
    registered_at = container.log.find(UUID(bob_id), Account)
    assert registered_at is not None
    clock.advance(minutes=5)
    client.put("/api/users/me", json={"display_name": "Bob B."}, headers=bearer(bob))
    renamed_at = clock.now()

    def state(as_of: str) -> Any:
        return client.get(
            f"/api/audit/accounts/{bob_id}/state",
            params={"as_of": as_of},
            headers=bearer(auditor),
        )

    before = state(registered_at.created_on.replace(microsecond=0).isoformat())
    assert before.status_code == 404 and before.json()["code"] == "account_not_found"
    then = state((renamed_at.replace(microsecond=0)).isoformat())
    after_rename = state(renamed_at.isoformat())
    assert after_rename.status_code == 200, after_rename.text
    assert after_rename.json()["display_name"] == "Bob B."
    assert after_rename.json()["email_verified"] is True
    assert then.json()["display_name"] == ""
    assert "password_hash" not in after_rename.text and "sealed" not in after_rename.text
    assert state("not a time").status_code == 400
    ordinary = client.get(
        f"/api/audit/accounts/{bob_id}/state",
        params={"as_of": renamed_at.isoformat()},
        headers=bearer(bob),
    )
    assert ordinary.status_code == 403


def test_an_unknown_query_parameter_is_refused_like_an_unknown_body_field(
    client: Client, container: Container
) -> None:
    auditor = with_role(client, container, "ada", "auditor")
    typo = client.get("/api/audit/events?acount_id=x", headers=bearer(auditor))
    assert typo.status_code == 400, typo.text
    assert typo.json()["errors"][0]["field"] == "acount_id"
    assert client.get("/api/audit/events?limit=5", headers=bearer(auditor)).status_code == 200


def test_a_cursor_beyond_64_bits_is_a_400_not_a_database_overflow(
    client: Client, container: Container
) -> None:
    """Found by the fuzzer: cursor=2**63 reached the driver and answered 500 on both stores."""
    auditor = with_role(client, container, "audra", "auditor")
    run_projections(container)
    for path in ("/api/users/me/activity", "/api/audit/events"):
        too_far = client.get(path, params={"cursor": str(2**63)}, headers=bearer(auditor))
        assert (too_far.status_code, too_far.json()["code"]) == (400, "validation_failed"), path
        last = client.get(path, params={"cursor": str(2**63 - 1)}, headers=bearer(auditor))
        assert last.status_code == 200, (path, last.text)


def test_instants_are_iso_8601_and_nothing_else(client: Client, container: Container) -> None:
    """Found by the fuzzer: `until=0.002` was taken as a Unix time, which the schema does not
    allow; a bad instant is a 400 problem naming the parameter."""
    auditor = with_role(client, container, "audra", "auditor")
    account = client.get("/api/users/me", headers=bearer(auditor)).json()["id"]
    for params in ({"until": "0.002"}, {"since": "1767225600"}, {"until": "2026-02-30T00:00:00Z"}):
        answer = client.get("/api/audit/events", params=params, headers=bearer(auditor))
        assert (answer.status_code, answer.json()["code"]) == (400, "validation_failed"), params
    for params in ({"until": "2030-01-01T00:00:00Z"}, {"since": "2020-01-01T00:00:00+02:00"}):
        assert (
            client.get("/api/audit/events", params=params, headers=bearer(auditor)).status_code
            == 200
        )
    state = f"/api/audit/accounts/{account}/state"
    assert client.get(state, params={"as_of": "0"}, headers=bearer(auditor)).status_code == 400
    assert (
        client.get(
            state, params={"as_of": "2030-01-01T00:00:00Z"}, headers=bearer(auditor)
        ).status_code
        == 200
    )


def test_a_query_parameter_given_twice_is_refused(client: Client, container: Container) -> None:
    """Found by the fuzzer: `cursor=2.7e242&cursor=0.0` was answered 200 with the last copy; a
    proxy reading the first would have seen another request (HTTP parameter pollution)."""
    auditor = with_role(client, container, "audra", "auditor")
    answer = client.get("/api/audit/events?cursor=2&cursor=0", headers=bearer(auditor))
    assert (answer.status_code, answer.json()["code"]) == (400, "validation_failed")
    assert answer.json()["errors"][0]["field"] == "cursor"
    assert (
        client.get("/api/audit/events?cursor=0&limit=5", headers=bearer(auditor)).status_code == 200
    )
