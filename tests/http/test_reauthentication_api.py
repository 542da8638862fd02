"""Re-authentication over HTTP, through the real ASGI app on both stores: every change that
adds a way in or weakens one asks again (the password and a code, a user-verified passkey, or
for an account without a password a recent sign-in), and every guess behind the token counts
as a failed login does (LoginFailed naming the command, the lock, the limits). Each refusal is
a problem document that records the failure and nothing else."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pyotp
import pytest
from litestar.testing import TestClient

from domain.account import NO_PASSWORD, Account
from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD
from tests.authenticator import Authenticator
from tests.conftest import FakeClock, event_count
from tests.http.test_api import bearer, enable_mfa, log_in, register_and_verify
from tests.http.test_passkeys_api import ORIGIN, new_events

Client = TestClient[Any]

# Each re-authenticated command: method, path (with the passkey's id), the body besides the proof.
COMMANDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "add_passkey": ("POST", "/api/users/me/passkeys/options", {}),
    "remove_passkey": ("DELETE", "/api/users/me/passkeys/{passkey}", {}),
    "disable_mfa": ("POST", "/api/users/me/mfa", {"action": "disable"}),
    "renew_recovery_codes": ("POST", "/api/users/me/mfa", {"action": "recovery_codes"}),
    "erase": ("DELETE", "/api/users/me", {}),
}


def failures(container: Container, after: int) -> list[tuple[str, str]]:
    """(factor, command) of each LoginFailed recorded since `after`."""
    found = []
    for notification in container.log.recorder.select_notifications(start=after + 1, limit=100):
        event = container.log.mapper.to_domain_event(notification)
        if type(event).__name__ == "LoginFailed":
            found.append((event.factor, event.command))
    return found


def add_passkey(
    client: Client, tokens: dict[str, Any], device: Authenticator, proof: dict[str, Any]
) -> str:
    options = client.post("/api/users/me/passkeys/options", headers=bearer(tokens), json=proof)
    assert options.status_code == 200, options.text
    created = client.post(
        "/api/users/me/passkeys",
        headers=bearer(tokens),
        json={"credential": device.create(options.json())},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def ada_with_everything(
    client: Client, container: Container, clock: FakeClock
) -> tuple[dict[str, Any], pyotp.TOTP, Authenticator, str]:
    """Ada: a password, a passkey, MFA on."""
    register_and_verify(client, container)
    tokens = log_in(client)
    device = Authenticator(ORIGIN)
    passkey = add_passkey(client, tokens, device, {"password": PASSWORD})
    return tokens, enable_mfa(client, tokens, clock), device, passkey


def send(
    client: Client, tokens: dict[str, Any], command: str, passkey: str, proof: dict[str, Any]
) -> Any:
    method, path, body = COMMANDS[command]
    return client.request(
        method, path.format(passkey=passkey), headers=bearer(tokens), json={**body, **proof}
    )


def problem(response: Any) -> tuple[int, str]:
    return response.status_code, response.json().get("code")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_change_asks_again_and_counts_every_wrong_guess(
    client: Client, container: Container, clock: FakeClock, command: str
) -> None:
    tokens, totp, _, passkey = ada_with_everything(client, container, clock)
    now = clock.now().timestamp

    # A stolen access token alone: nothing to guess with, nothing recorded.
    before = event_count(container)
    assert problem(send(client, tokens, command, passkey, {})) == (
        401,
        "reauthentication_required",
    )
    alone = send(client, tokens, command, passkey, {"password": PASSWORD})
    assert problem(alone) == (401, "invalid_mfa_code")  # MFA on: the code too
    assert new_events(container, before) == []

    # Each wrong guess: refused, and recorded as a failed login for this command, only that.
    wrong = send(client, tokens, command, passkey, {"password": "not it!", "code": totp.at(now())})
    assert problem(wrong) == (403, "invalid_current_password")
    bad_code = send(client, tokens, command, passkey, {"password": PASSWORD, "code": "000000"})
    assert problem(bad_code) == (401, "invalid_mfa_code")
    assert new_events(container, before) == ["LoginFailed", "LoginFailed"]
    assert failures(container, before) == [("password", command), ("mfa", command)]
    me = client.get("/api/users/me/passkeys", headers=bearer(tokens))
    assert [p["id"] for p in me.json()] == [passkey]  # still there, and MFA still on:
    assert container.mfa.enabled(container.signer.verify(tokens["access_token"], clock.now()))

    # Both factors: done, and the code is spent with the change.
    done = send(client, tokens, command, passkey, {"password": PASSWORD, "code": totp.at(now())})
    assert done.status_code in (200, 204), done.text
    if command != "erase":
        assert "TotpCodeAccepted" in new_events(container, before)


def test_a_wrong_current_password_at_a_change_is_counted(
    client: Client, container: Container
) -> None:
    register_and_verify(client, container)
    tokens = log_in(client)
    before = event_count(container)
    wrong = client.put(
        "/api/users/me/password",
        headers=bearer(tokens),
        json={"current_password": "not it!", "new_password": "a brand new passphrase"},
    )
    assert problem(wrong) == (403, "invalid_current_password")
    assert failures(container, before) == [("password", "change_password")]
    assert new_events(container, before) == ["LoginFailed"]


def test_a_password_change_with_mfa_on_asks_for_a_code_too(
    client: Client, container: Container, clock: FakeClock
) -> None:
    """A change to how the account is reached asks for every factor it has (ASVS 5.0 V7.5.1):
    with the password alone, a stolen token and a phished password together change nothing."""
    tokens, totp, _, _ = ada_with_everything(client, container, clock)
    new_password = "a brand new passphrase"

    def change(**proof: str) -> Any:
        body = {"current_password": PASSWORD, "new_password": new_password, **proof}
        return client.put("/api/users/me/password", headers=bearer(tokens), json=body)

    before = event_count(container)
    assert problem(change()) == (401, "invalid_mfa_code")
    assert new_events(container, before) == []  # a missing code records nothing
    assert problem(change(code="000000")) == (401, "invalid_mfa_code")
    assert failures(container, before) == [("mfa", "change_password")]
    assert new_events(container, before) == ["LoginFailed"]
    done = change(code=totp.at(clock.now().timestamp()))
    assert done.status_code == 204, done.text
    assert new_events(container, before)[1:] == [
        "TotpCodeAccepted",
        "PasswordChanged",
        "AllSessionsRevoked",
    ]


def test_guesses_behind_a_token_meet_the_lock_then_the_limit(
    client: Client, container: Container, clock: FakeClock
) -> None:
    """LOCKOUT_THRESHOLD (5) wrong passwords lock the account, and the lock answers as at a
    sign-in, even for the right password; the tenth guess in a minute (the login's allowance,
    per account) meets 429. Nothing but the failures and the lock is recorded."""
    tokens, totp, _, passkey = ada_with_everything(client, container, clock)
    before = event_count(container)
    answers = [
        send(client, tokens, "disable_mfa", passkey, {"password": f"guess {n}", "code": "000000"})
        for n in range(12)
    ]
    codes = [problem(a) for a in answers]
    assert codes[:5] == [(403, "invalid_current_password")] * 5
    assert codes[5:10] == [(423, "account_locked")] * 5
    assert codes[10:] == [(429, "rate_limited")] * 2
    assert all(int(a.headers["retry-after"]) > 0 for a in answers[5:])
    assert new_events(container, before) == ["LoginFailed"] * 5 + ["AccountLocked"]
    assert failures(container, before) == [("password", "disable_mfa")] * 5

    clock.advance(seconds=61)  # the limit refills; the lock (15 minutes) does not
    right = {"password": PASSWORD, "code": totp.at(clock.now().timestamp())}
    assert problem(send(client, tokens, "disable_mfa", passkey, right)) == (423, "account_locked")
    login = client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
    assert problem(login) == (423, "account_locked")
    assert new_events(container, before) == ["LoginFailed"] * 5 + ["AccountLocked"]


# A passkey in place of the password and the code


def reauthentication_options(client: Client, tokens: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/api/users/me/reauthentication/passkey", headers=bearer(tokens))
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["options"])


def test_a_user_verified_passkey_stands_for_the_password_and_the_code(
    client: Client, container: Container, clock: FakeClock
) -> None:
    tokens, _, device, passkey = ada_with_everything(client, container, clock)
    options = reauthentication_options(client, tokens)
    assert options["userVerification"] == "required"
    assert [c["id"] for c in options["allowCredentials"]] == [passkey]
    assertion = device.get(options)
    before = event_count(container)
    renewed = send(client, tokens, "renew_recovery_codes", passkey, {"passkey": assertion})
    assert renewed.status_code == 200, renewed.text
    assert new_events(container, before) == ["PasskeyUsed", "RecoveryCodesRenewed"]
    # Taken once: the same assertion proves nothing again (and the failure is counted).
    replayed = send(client, tokens, "disable_mfa", passkey, {"passkey": assertion})
    assert problem(replayed) == (401, "invalid_passkey")
    assert failures(container, before) == [("passkey", "disable_mfa")]


def test_passkey_assertions_that_prove_nothing_are_refused_and_counted(
    client: Client, container: Container, clock: FakeClock
) -> None:
    tokens, _, device, passkey = ada_with_everything(client, container, clock)
    register_and_verify(client, container, "bob")
    bob = log_in(client, "bob")
    bob_device = Authenticator(ORIGIN)
    add_passkey(client, bob, bob_device, {"password": PASSWORD})
    cases = {
        # Presence alone: no PIN or biometric, so not two factors.
        "not user-verified": device.get(reauthentication_options(client, tokens), verified=False),
        # A sign-in's challenge is not a re-authentication's.
        "a sign-in challenge": device.get(
            client.post("/api/auth/passkey/options", json={}).json()["options"]
        ),
        # Bob's challenge, answered by Ada's passkey.
        "another account's challenge": device.get(
            {**reauthentication_options(client, bob), "allowCredentials": []}
        ),
        # Bob's passkey over Ada's challenge: not one of hers.
        "another account's passkey": bob_device.get(
            {**reauthentication_options(client, tokens), "allowCredentials": []}
        ),
    }
    for case, assertion in cases.items():
        before = event_count(container)
        refused = send(client, tokens, "disable_mfa", passkey, {"passkey": assertion})
        assert problem(refused) == (401, "invalid_passkey"), case
        assert new_events(container, before) == ["LoginFailed"], case
    assert container.mfa.enabled(container.signer.verify(tokens["access_token"], clock.now()))


def test_a_cloned_passkey_proves_nothing_and_is_recorded_as_one(
    client: Client, container: Container, clock: FakeClock
) -> None:
    """A signature counter that did not grow (WebAuthn L3 6.1.1) is refused as at a sign-in:
    PasskeyCounterWentBack and a failure of the command, nothing else."""
    tokens, _, device, passkey = ada_with_everything(client, container, clock)
    proven = device.get(reauthentication_options(client, tokens))  # the counter is at 1 now
    assert send(client, tokens, "renew_recovery_codes", passkey, {"passkey": proven}).is_success
    clone = device.get(reauthentication_options(client, tokens), sign_count=1)
    before = event_count(container)
    refused = send(client, tokens, "disable_mfa", passkey, {"passkey": clone})
    assert problem(refused) == (401, "invalid_passkey")
    assert new_events(container, before) == ["PasskeyCounterWentBack", "LoginFailed"]
    assert failures(container, before) == [("passkey", "disable_mfa")]


def test_no_passkey_no_options(client: Client, container: Container) -> None:
    register_and_verify(client, container)
    tokens = log_in(client)
    answer = client.post("/api/users/me/reauthentication/passkey", headers=bearer(tokens))
    assert problem(answer) == (404, "passkey_not_found")
    assert client.post("/api/users/me/reauthentication/passkey").status_code == 401


# An account without a password (made by a provider sign-in)


def passwordless(container: Container, clock: FakeClock) -> tuple[Account, Any]:
    """An account as a first provider sign-in makes it, and an access token of a session
    signed in now (auth_time: now)."""
    now = clock.now()
    account = Account(
        email="pat@example.com", username="pat", password_hash=NO_PASSWORD, timestamp=now
    )
    account.confirm_email_by_provider("idp", now)
    container.log.save(account)
    token = container.signer.issue(account.id, uuid4(), (), now, now)
    return account, {"access_token": token}


def test_without_a_password_a_recent_sign_in_proves_and_a_stale_one_does_not(
    client: Client, container: Container, clock: FakeClock
) -> None:
    _, tokens = passwordless(container, clock)
    device = Authenticator(ORIGIN)
    add_passkey(client, tokens, device, {})  # signed in a moment ago: that is the proof
    clock.advance(seconds=container.settings.reauth_max_age + 1)  # the token is still good
    before = event_count(container)
    stale = client.post("/api/users/me/passkeys/options", headers=bearer(tokens), json={})
    assert problem(stale) == (401, "reauthentication_required")
    guessed = client.post(
        "/api/users/me/passkeys/options", headers=bearer(tokens), json={"password": PASSWORD}
    )
    assert problem(guessed) == (403, "invalid_current_password")  # no password is right
    assert failures(container, before) == [("password", "add_passkey")]
    # Its passkey proves it instead.
    assertion = device.get(reauthentication_options(client, tokens))
    again = client.post(
        "/api/users/me/passkeys/options", headers=bearer(tokens), json={"passkey": assertion}
    )
    assert again.status_code == 200, again.text
