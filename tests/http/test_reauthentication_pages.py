"""The pages ask what the API asks (application/factors/reauthentication.py), through the real ASGI
app: both factors to turn two-step sign-in off or for new recovery codes, the password before a
passkey's challenge, and nothing but a recent sign-in from an account without a password."""

from __future__ import annotations

import re
from uuid import uuid4

import pyotp

from domain.account import NO_PASSWORD, Account
from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock, event_count
from tests.http.test_api import register_and_verify
from tests.http.test_pages import Client, csrf_token, sign_in


def mfa_on(client: Client, clock: FakeClock, token: str) -> pyotp.TOTP:
    page = client.post("/account/mfa", data={"csrf_token": token, "action": "enable"})
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
    assert secret, page.text
    totp = pyotp.TOTP(secret.group(1))
    confirmed = client.post(
        "/account/mfa",
        data={"csrf_token": token, "action": "confirm", "code": totp.at(clock.now().timestamp())},
    )
    assert confirmed.status_code == 200 and "Keep these recovery codes" in confirmed.text
    clock.advance(seconds=30)
    return totp


def test_mfa_off_and_new_recovery_codes_ask_both_factors(
    site: tuple[Client, Container],
    clock: FakeClock,
) -> None:
    client, container = site
    register_and_verify(client, container)
    token = sign_in(client)
    totp = mfa_on(client, clock, token)
    page = client.get("/account").text
    for field in ("disable-password", "disable-code", "renew-password", "renew-code"):
        assert f'id="{field}"' in page, field

    before = event_count(container)
    code_only = client.post(
        "/account/mfa",
        data={"csrf_token": token, "action": "disable", "code": totp.at(clock.now().timestamp())},
    )
    assert code_only.status_code == 401 and "Confirm it is you" in code_only.text
    password_only = client.post(
        "/account/mfa", data={"csrf_token": token, "action": "disable", "password": PASSWORD}
    )
    assert password_only.status_code == 401 and "The code is wrong" in password_only.text
    assert event_count(container) == before

    renewed = client.post(
        "/account/mfa",
        data={
            "csrf_token": token,
            "action": "recovery_codes",
            "password": PASSWORD,
            "code": totp.at(clock.now().timestamp()),
        },
    )
    assert renewed.status_code == 200, renewed.text
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", renewed.text)
    assert len(codes) == 10
    off = client.post(
        "/account/mfa",
        data={"csrf_token": token, "action": "disable", "password": PASSWORD, "code": codes[0]},
    )
    assert (off.status_code, off.headers["location"]) == (303, "/account?done=mfa-off")


def test_a_passkey_challenge_on_the_page_asks_for_the_password(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    register_and_verify(client, container)
    sign_in(client)
    page = client.get("/account").text
    assert 'id="passkey-add-password"' in page
    header = re.search(r'data-passkey-add data-csrf="([0-9a-f]+)"', page)
    assert header
    csrf = {"X-CSRF-Token": header.group(1)}
    before = event_count(container)
    bare = client.post("/account/passkeys/options", headers=csrf, json={})
    assert bare.status_code == 401 and "Confirm it is you" in bare.json()["errors"][0]
    assert event_count(container) == before
    wrong = client.post("/account/passkeys/options", headers=csrf, json={"password": "not it!"})
    assert wrong.status_code == 403
    assert event_count(container) == before + 1  # the failure, counted
    options = client.post("/account/passkeys/options", headers=csrf, json={"password": PASSWORD})
    assert options.status_code == 200 and "challenge" in options.json()


def test_an_account_without_a_password_is_asked_only_for_a_recent_sign_in(
    site: tuple[Client, Container],
    clock: FakeClock,
) -> None:
    """As a first provider sign-in makes it: no password field; a sign-in older than
    REAUTH_MAX_AGE is refused, a recent one proves it."""
    client, container = site
    now = clock.now()
    account = Account(
        email="pat@example.com", username="pat", password_hash=NO_PASSWORD, timestamp=now
    )
    account.confirm_email_by_provider("idp", now)
    container.log.save(account)
    client.cookies.set("tessera-access", container.signer.issue(account.id, uuid4(), (), now, now))
    page = client.get("/account").text
    assert 'id="delete-password"' not in page and "Sign out and in again first" in page

    clock.advance(seconds=container.settings.reauth_max_age + 1)
    token = csrf_token(client.get("/account").text)
    stale = client.post("/account/delete", data={"csrf_token": token})
    assert stale.status_code == 401 and "Confirm it is you" in stale.text
    assert container.log.find(account.id, Account) is not None

    now = clock.now()
    client.cookies.set("tessera-access", container.signer.issue(account.id, uuid4(), (), now, now))
    token = csrf_token(client.get("/account").text)
    erased = client.post("/account/delete", data={"csrf_token": token})
    assert (erased.status_code, erased.headers["location"]) == (303, "/login?done=deleted")
    assert container.log.find(account.id, Account) is None
