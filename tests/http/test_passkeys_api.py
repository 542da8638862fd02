"""Passkeys over HTTP, through the real ASGI app on both stores, with a software authenticator:
registering, naming, removing, signing in (alone and as the second factor), and every refusal
a 4xx that records nothing but the failure."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pyotp
import pytest
from litestar.testing import TestClient

from domain.account import Account
from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD
from tests.authenticator import (
    Authenticator,
    b64url,
    tampered_client_data,
    tampered_signature,
    unb64url,
)
from tests.conftest import FakeClock, event_count, run_projections
from tests.http.test_api import bearer, log_in, register_and_verify

Client = TestClient[Any]
ORIGIN = "http://127.0.0.1:8000"  # PUBLIC_URL's origin, the default WEBAUTHN_ORIGINS
PROOF = {"password": PASSWORD}  # re-authentication: a new passkey is a new way in


# Rules that do not depend on the store run on the embedded default only; what does (the flows, single use of challenges, sealing, erasure) runs on both, and the challenge stores' own contract on all three in tests/infrastructure/test_one_time_values.py.
sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


def new_events(container: Container, after: int) -> list[str]:
    notifications = container.log.recorder.select_notifications(start=after + 1, limit=1000)
    return [n.topic.rsplit(".", 1)[-1] for n in notifications]


def with_passkey(
    client: Client, container: Container, who: str = "ada"
) -> tuple[dict[str, Any], dict[str, Any], Authenticator]:
    account = register_and_verify(client, container, who)
    tokens = log_in(client, who)
    device = Authenticator(ORIGIN)
    options = client.post("/api/users/me/passkeys/options", headers=bearer(tokens), json=PROOF)
    assert options.status_code == 200, options.text
    created = client.post(
        "/api/users/me/passkeys",
        headers=bearer(tokens),
        json={"credential": device.create(options.json()), "name": "Phone"},
    )
    assert created.status_code == 201, created.text
    return account, tokens, device


def sign_in_options(client: Client, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/api/auth/passkey/options", json=body or {})
    assert response.status_code == 200, response.text
    return dict(response.json()["options"])


def test_register_list_rename_and_sign_in_with_a_passkey(
    client: Client, container: Container
) -> None:
    account = register_and_verify(client, container)
    tokens = log_in(client)
    options = client.post(
        "/api/users/me/passkeys/options", headers=bearer(tokens), json=PROOF
    ).json()
    assert options["rp"] == {"id": "127.0.0.1", "name": "Tessera"}
    assert unb64url(options["user"]["id"]) == UUID(account["id"]).bytes
    assert (options["user"]["name"], options["user"]["displayName"]) == ("ada", "ada")
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["excludeCredentials"] == []
    device = Authenticator(ORIGIN)
    created = client.post(
        "/api/users/me/passkeys",
        headers=bearer(tokens),
        json={"credential": device.create(options)},
    ).json()
    assert created["id"] == device.credentials[0].id
    assert (created["name"], created["last_used_at"]) == ("Passkey", None)

    again = client.post("/api/users/me/passkeys/options", headers=bearer(tokens), json=PROOF).json()
    assert [c["id"] for c in again["excludeCredentials"]] == [created["id"]]
    renamed = client.patch(
        f"/api/users/me/passkeys/{created['id']}", headers=bearer(tokens), json={"name": "Laptop"}
    )
    assert (renamed.status_code, renamed.json()["name"]) == (200, "Laptop")

    options = sign_in_options(client)
    assert options["userVerification"] == "required"
    assert "allowCredentials" not in options
    signed_in = client.post("/api/auth/passkey", json={"credential": device.get(options)})
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["token_type"] == "Bearer"
    me = client.get("/api/users/me", headers=bearer(signed_in.json()))
    assert me.json()["id"] == account["id"]

    listed = client.get("/api/users/me/passkeys", headers=bearer(signed_in.json())).json()
    assert [(p["id"], p["name"]) for p in listed] == [(created["id"], "Laptop")]
    assert listed[0]["last_used_at"] is not None
    run_projections(container)
    activity = client.get("/api/users/me/activity", headers=bearer(signed_in.json())).json()
    types = [entry["type"] for entry in activity["entries"]]
    assert {"PasskeyRegistered", "PasskeyRenamed", "PasskeyUsed", "SessionStarted"} <= set(types)


@sqlite_only
def test_removing_a_passkey_asks_for_the_password_and_the_code_when_mfa_is_on(
    client: Client, container: Container, clock: FakeClock
) -> None:
    _, tokens, device = with_passkey(client, container)
    path = f"/api/users/me/passkeys/{device.credentials[0].id}"
    unknown = client.request(
        "DELETE", "/api/users/me/passkeys/nope", headers=bearer(tokens), json={"password": PASSWORD}
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "passkey_not_found")
    wrong = client.request("DELETE", path, headers=bearer(tokens), json={"password": "not it!"})
    assert (wrong.status_code, wrong.json()["code"]) == (403, "invalid_current_password")

    secret = client.post(
        "/api/users/me/mfa", headers=bearer(tokens), json={"action": "enable"}
    ).json()["secret"]
    client.post(
        "/api/users/me/mfa",
        headers=bearer(tokens),
        json={"action": "confirm", "code": pyotp.TOTP(secret).at(clock.now())},
    )
    clock.advance(seconds=31)
    no_code = client.request("DELETE", path, headers=bearer(tokens), json={"password": PASSWORD})
    assert (no_code.status_code, no_code.json()["code"]) == (401, "invalid_mfa_code")
    code = pyotp.TOTP(secret).at(clock.now())
    done = client.request(
        "DELETE", path, headers=bearer(tokens), json={"password": PASSWORD, "code": code}
    )
    assert done.status_code == 204, done.text
    assert client.get("/api/users/me/passkeys", headers=bearer(tokens)).json() == []
    gone = client.post(
        "/api/auth/passkey", json={"credential": device.get(sign_in_options(client))}
    )
    assert (gone.status_code, gone.json()["code"]) == (401, "invalid_passkey")


def test_a_passkey_completes_the_second_factor_after_a_password(
    client: Client, container: Container, clock: FakeClock
) -> None:
    _, tokens, device = with_passkey(client, container)
    secret = client.post(
        "/api/users/me/mfa", headers=bearer(tokens), json={"action": "enable"}
    ).json()["secret"]
    client.post(
        "/api/users/me/mfa",
        headers=bearer(tokens),
        json={"action": "confirm", "code": pyotp.TOTP(secret).at(clock.now())},
    )
    mfa_token = client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD}).json()[
        "mfa_token"
    ]
    options = sign_in_options(client, {"mfa_token": mfa_token})
    assert options["userVerification"] == "preferred"
    assert [c["id"] for c in options["allowCredentials"]] == [device.credentials[0].id]
    answer = device.get(options, verified=False)  # presence is enough after the password
    # The sign-in ceremony does not take a second-factor challenge.
    refused = client.post("/api/auth/passkey", json={"credential": answer})
    assert refused.status_code == 401
    options = sign_in_options(client, {"mfa_token": mfa_token})
    done = client.post(
        "/api/auth/passkey",
        json={"credential": device.get(options, verified=False), "mfa_token": mfa_token},
    )
    assert done.status_code == 200, done.text
    assert "access_token" in done.json()
    bad_token = client.post("/api/auth/passkey/options", json={"mfa_token": "x.y.z"})
    assert (bad_token.status_code, bad_token.json()["code"]) == (401, "invalid_mfa_token")


def _replayed(client: Client, device: Authenticator, container: Container) -> dict[str, Any]:
    answer = device.get(sign_in_options(client))
    assert client.post("/api/auth/passkey", json={"credential": answer}).status_code == 200
    device.credentials[0].sign_count += 1
    return answer


BAD_SIGN_INS: dict[str, Any] = {
    "a replayed challenge": _replayed,
    "an expired challenge": "expired",
    "a wrong origin": lambda c, d, _: d.get(sign_in_options(c), origin="https://evil.example"),
    "a wrong RP ID": lambda c, d, _: d.get(sign_in_options(c), rp_id="evil.example"),
    "a tampered signature": lambda c, d, _: tampered_signature(d.get(sign_in_options(c))),
    "a tampered clientDataJSON": lambda c, d, _: tampered_client_data(d.get(sign_in_options(c))),
    "no user verification": lambda c, d, _: d.get(sign_in_options(c), verified=False),
}


@sqlite_only
@pytest.mark.parametrize("case", list(BAD_SIGN_INS))
def test_a_bad_sign_in_is_a_401_recording_only_the_failure(
    client: Client, container: Container, clock: FakeClock, case: str
) -> None:
    account, _, device = with_passkey(client, container)
    make = BAD_SIGN_INS[case]
    if make == "expired":
        answer = device.get(sign_in_options(client))
        clock.advance(seconds=container.settings.passkey_challenge_ttl + 1)
    else:
        answer = make(client, device, container)
    before = event_count(container)
    refused = client.post("/api/auth/passkey", json={"credential": answer})
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_passkey")
    assert new_events(container, before) == ["LoginFailed"]
    found = container.log.find(UUID(account["id"]), Account)
    assert found is not None and found.failed_logins == 1


def test_a_counter_that_went_back_is_refused_as_a_clone_and_recorded(
    client: Client, container: Container
) -> None:
    _, _, device = with_passkey(client, container)
    ok = client.post(
        "/api/auth/passkey", json={"credential": device.get(sign_in_options(client), sign_count=7)}
    )
    assert ok.status_code == 200
    before = event_count(container)
    clone = client.post(
        "/api/auth/passkey", json={"credential": device.get(sign_in_options(client), sign_count=7)}
    )
    assert (clone.status_code, clone.json()["code"]) == (401, "invalid_passkey")
    assert new_events(container, before) == ["PasskeyCounterWentBack", "LoginFailed"]


@sqlite_only
def test_an_assertion_for_another_accounts_credential_is_refused(
    client: Client, container: Container
) -> None:
    ada, _, ada_device = with_passkey(client, container, "ada")
    _, _, bob_device = with_passkey(client, container, "bob")
    # Bob's authenticator claims to be Ada's (her user handle) with Bob's key.
    bob_device.credentials[0].user_handle = UUID(ada["id"]).bytes
    before = event_count(container)
    refused = client.post(
        "/api/auth/passkey", json={"credential": bob_device.get(sign_in_options(client))}
    )
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_passkey")
    assert new_events(container, before) == ["LoginFailed"]
    assert ada_device.credentials  # Ada's own still works
    ok = client.post(
        "/api/auth/passkey", json={"credential": ada_device.get(sign_in_options(client))}
    )
    assert ok.status_code == 200


@sqlite_only
def test_failed_passkey_sign_ins_lock_the_account(client: Client, container: Container) -> None:
    _, _, device = with_passkey(client, container)
    for _ in range(container.settings.lockout_threshold):
        answer = tampered_signature(device.get(sign_in_options(client)))
        assert client.post("/api/auth/passkey", json={"credential": answer}).status_code == 401
    locked = client.post(
        "/api/auth/passkey", json={"credential": device.get(sign_in_options(client))}
    )
    assert (locked.status_code, locked.json()["code"]) == (423, "account_locked")


BAD_REGISTRATIONS: dict[str, Any] = {
    "a wrong origin": lambda d, o: d.create(o, origin="https://evil.example"),
    "a wrong RP ID": lambda d, o: d.create(o, rp_id="evil.example"),
    # Attestation "none" signs nothing over clientDataJSON, so what a change can be caught by is
    # what the library checks in it: its type, origin and challenge.
    "a tampered clientDataJSON": lambda d, o: tampered_client_data(
        d.create(o), type="webauthn.get"
    ),
    "not a credential": lambda d, o: {"id": "x", "response": {}},
}


@sqlite_only
@pytest.mark.parametrize("case", list(BAD_REGISTRATIONS))
def test_a_bad_registration_is_a_400_that_records_nothing(
    client: Client, container: Container, case: str
) -> None:
    register_and_verify(client, container)
    tokens = log_in(client)
    options = client.post(
        "/api/users/me/passkeys/options", headers=bearer(tokens), json=PROOF
    ).json()
    before = event_count(container)
    answer = BAD_REGISTRATIONS[case](Authenticator(ORIGIN), options)
    refused = client.post(
        "/api/users/me/passkeys", headers=bearer(tokens), json={"credential": answer}
    )
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_passkey_registration")
    assert event_count(container) == before


def test_a_registration_challenge_is_single_use_and_bound_to_its_account(
    client: Client, container: Container, clock: FakeClock
) -> None:
    register_and_verify(client, container, "bob")
    bob = log_in(client, "bob")
    register_and_verify(client, container)
    tokens = log_in(client)
    device = Authenticator(ORIGIN)
    options = client.post(
        "/api/users/me/passkeys/options", headers=bearer(tokens), json=PROOF
    ).json()
    answer = device.create(options)
    before = event_count(container)
    stolen = client.post("/api/users/me/passkeys", headers=bearer(bob), json={"credential": answer})
    assert stolen.status_code == 400  # Bob cannot use Ada's ceremony (and it is now spent)
    replay = client.post(
        "/api/users/me/passkeys", headers=bearer(tokens), json={"credential": answer}
    )
    assert replay.status_code == 400
    options = client.post(
        "/api/users/me/passkeys/options", headers=bearer(tokens), json=PROOF
    ).json()
    late = device.create(options)
    clock.advance(seconds=container.settings.passkey_challenge_ttl + 1)
    expired = client.post(
        "/api/users/me/passkeys", headers=bearer(tokens), json={"credential": late}
    )
    assert expired.status_code == 400
    assert event_count(container) == before


def test_passkeys_are_sealed_in_events_and_snapshots(client: Client, container: Container) -> None:
    account, _, device = with_passkey(client, container)
    account_id = UUID(account["id"])
    client.post("/api/auth/passkey", json={"credential": device.get(sign_in_options(client))})
    container.log.take_snapshot(account_id)
    recorder = container.log.recorder
    stored = b"\n".join(n.state for n in recorder.select_notifications(start=1, limit=100_000))
    assert container.log.snapshots is not None
    stored += b"\n".join(
        s.state for s in container.log.snapshots.recorder.select_events(account_id)
    )
    credential = device.credentials[0]
    numbers = credential.key.public_key().public_numbers()
    for secret in (
        credential.id.encode(),
        b64url(numbers.x.to_bytes(32, "big")).encode(),
        b"Phone",
    ):
        assert secret not in stored, secret
    assert b'"passkeys":{"_type_":"sealed"' in stored  # the snapshot holds them, sealed
    found = container.log.find(account_id, Account)
    assert found is not None and found.passkey(credential.id).name == "Phone"


def test_an_erased_account_with_passkeys_replays_and_its_passkeys_are_gone(
    client: Client, container: Container
) -> None:
    """After erasure every credential id reads "[erased]" alike; the account's history must
    still replay (time travel, the trail) with two passkeys, one removed, one used."""
    account, tokens, device = with_passkey(client, container)
    options = client.post(
        "/api/users/me/passkeys/options", headers=bearer(tokens), json=PROOF
    ).json()
    second = client.post(
        "/api/users/me/passkeys",
        headers=bearer(tokens),
        json={"credential": device.create(options)},
    )
    assert second.status_code == 201
    first = device.credentials.pop(0)
    removed = client.request(
        "DELETE",
        f"/api/users/me/passkeys/{first.id}",
        headers=bearer(tokens),
        json={"password": PASSWORD},
    )
    assert removed.status_code == 204
    signed_in = client.post(
        "/api/auth/passkey", json={"credential": device.get(sign_in_options(client))}
    )
    assert signed_in.status_code == 200
    erased = client.request(
        "DELETE", "/api/users/me", headers=bearer(signed_in.json()), json={"password": PASSWORD}
    )
    assert erased.status_code == 204
    run_projections(container)
    # Time travel replays the stored events (no snapshot, no cached copy), values erased.
    state = container.history.state_as_of(UUID(account["id"]), container.clock.now())
    assert state.username == "[erased]"
    assert container.log.repository.get(UUID(account["id"])).passkeys == {}
    gone = client.post(
        "/api/auth/passkey", json={"credential": device.get(sign_in_options(client))}
    )
    assert (gone.status_code, gone.json()["code"]) == (401, "invalid_passkey")


@sqlite_only
def test_passkey_sign_ins_are_rate_limited_per_client_ip(
    client: Client, container: Container
) -> None:
    with_passkey(client, container)
    limit = int(container.settings.rate_limit_login.split(",")[0].split("/")[0])
    answers = [
        client.post("/api/auth/passkey", json={"credential": {"id": "x"}}).status_code
        for _ in range(limit + 1)
    ]
    assert answers[-1] == 429 and 429 not in answers[:-2]


@sqlite_only
def test_asking_for_sign_in_options_is_rate_limited_per_client_ip(client: Client) -> None:
    limit = 60  # RATE_LIMIT_PASSKEY_OPTIONS's default: each answer stores a challenge
    answers = [
        client.post("/api/auth/passkey/options", json={}).status_code for _ in range(limit + 1)
    ]
    assert answers[:limit] == [200] * limit and answers[-1] == 429
