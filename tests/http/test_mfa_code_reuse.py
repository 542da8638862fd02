"""A code just used (to confirm MFA) is refused when given again, as a replay must be; the
answer says why, and what to do: wait for the app's next code. The problem code stays."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyotp
from litestar.testing import TestClient

from interfaces.container import Container
from interfaces.http.app import create_app
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock
from tests.http.test_api import bearer, log_in, register_and_verify
from tests.http.test_pages import csrf_token, pages_container

Client = TestClient[Any]
HINT = "This code was already used; wait for the next one from your app."


def confirm_mfa(client: Client, tokens: dict[str, Any], clock: FakeClock) -> tuple[pyotp.TOTP, str]:
    """MFA on, through the API; the app, and the code that confirmed it (the clock stays in
    its step, as a person's next try comes seconds later)."""
    enabled = client.post("/api/users/me/mfa", headers=bearer(tokens), json={"action": "enable"})
    app = pyotp.TOTP(enabled.json()["secret"])
    code = app.at(clock.now().timestamp())
    confirmed = client.post(
        "/api/users/me/mfa", headers=bearer(tokens), json={"action": "confirm", "code": code}
    )
    assert confirmed.status_code == 200, confirmed.text
    return app, code


def test_the_api_says_the_code_was_used_and_to_wait_for_the_next(
    client: Client, container: Container, clock: FakeClock
) -> None:
    register_and_verify(client, container)
    app, code = confirm_mfa(client, log_in(client), clock)
    first = client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
    mfa_token = first.json()["mfa_token"]

    again = client.post("/api/auth/login/mfa", json={"mfa_token": mfa_token, "code": code})
    assert (again.status_code, again.json()["code"]) == (401, "invalid_mfa_code")
    assert again.json()["detail"] == HINT
    wrong = client.post("/api/auth/login/mfa", json={"mfa_token": mfa_token, "code": "000000"})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "invalid_mfa_code")
    assert "wait for the next" not in wrong.json()["detail"]  # a wrong code is not "used"

    clock.advance(seconds=30)
    following = app.at(clock.now().timestamp())
    done = client.post("/api/auth/login/mfa", json={"mfa_token": mfa_token, "code": following})
    assert done.status_code == 200, done.text


def test_the_sign_in_page_says_the_code_was_used_and_to_wait_for_the_next(
    tmp_path: Path, clock: FakeClock
) -> None:
    container = pages_container(tmp_path, clock)
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    try:
        with TestClient(create_app(container, run_background=False)) as client:
            client.follow_redirects = False
            register_and_verify(client, container)
            _, code = confirm_mfa(client, log_in(client), clock)
            password_step = client.post(
                "/login",
                data={
                    "csrf_token": csrf_token(client.get("/login").text),
                    "login": "ada",
                    "password": PASSWORD,
                },
            )
            mfa_token = re.search(r'name="mfa_token" value="([^"]+)"', password_step.text)
            assert mfa_token, password_step.text
            refused = client.post(
                "/login/mfa",
                data={
                    "csrf_token": csrf_token(password_step.text),
                    "mfa_token": mfa_token.group(1),
                    "code": code,
                },
            )
            assert refused.status_code == 401
            assert HINT in refused.text
            assert 'name="code"' in refused.text  # the form again, for the next code
    finally:
        container.close()
