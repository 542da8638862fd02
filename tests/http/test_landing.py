"""Where a person lands: `/` leads to the sign-in page or the account (pages on) or names the
API docs (pages off); the account page, signed out, leads to a sign-in that says why and comes
back to it, and to no other site whatever the link says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from interfaces.container import Container
from interfaces.http.app import create_app
from interfaces.pages.guard import same_site_path
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock
from tests.http.test_api import register_and_verify
from tests.http.test_pages import csrf_token, pages_container, sign_in

Client = TestClient[Any]

# Each would take the person to another host, in some browser's reading of it.
OPEN_REDIRECTS = [
    "//evil.example/account",
    "https://evil.example/account",
    "/\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "\\\\evil.example",
    "javascript:alert(1)",
    "evil.example",
    "",
]


def test_the_root_leads_to_sign_in_then_to_the_account(site: tuple[Client, Container]) -> None:
    client, container = site
    landing = client.get("/")
    assert (landing.status_code, landing.headers["location"]) == (303, "/login")
    register_and_verify(client, container)
    sign_in(client)
    assert client.get("/").headers["location"] == "/account"


def test_without_pages_the_root_names_the_api_docs(tmp_path: Path, clock: FakeClock) -> None:
    container = pages_container(tmp_path, clock, PAGES_ENABLED="false")
    try:
        with TestClient(create_app(container, run_background=False)) as client:
            answer = client.get("/")
            assert answer.status_code == 200
            assert answer.json()["api_docs"] == "/schema"
            assert client.get(answer.json()["openapi"]).status_code == 200
            assert "/" not in client.get("/schema/openapi.json").json()["paths"]
    finally:
        container.close()


def test_the_account_signed_out_asks_to_sign_in_and_comes_back(
    site: tuple[Client, Container],
) -> None:
    client, container = site
    register_and_verify(client, container)
    sent = client.get("/account")
    assert (sent.status_code, sent.headers["location"]) == (303, "/login?next=/account")
    page = client.get(sent.headers["location"])
    assert "Sign in to see your account." in page.text
    assert 'name="next" value="/account"' in page.text
    signed_in = client.post(
        "/login",
        data={
            "csrf_token": csrf_token(page.text),
            "login": "ada",
            "password": PASSWORD,
            "next": "/account?done=profile",
        },
    )
    assert (signed_in.status_code, signed_in.headers["location"]) == (
        303,
        "/account?done=profile",
    )
    # Signed in already: the sign-in page goes straight on.
    assert client.get("/login?next=/account").headers["location"] == "/account"


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
def test_the_sign_in_never_leads_to_another_site(
    site: tuple[Client, Container], target: str
) -> None:
    client, container = site
    register_and_verify(client, container)
    page = client.get("/login", params={"next": target})
    assert page.status_code == 200
    assert 'name="next"' not in page.text  # not carried on to the form
    assert "evil.example" not in page.text
    signed_in = client.post(
        "/login",
        data={
            "csrf_token": csrf_token(page.text),
            "login": "ada",
            "password": PASSWORD,
            "next": target,  # posted by a hostile page's own form, say
        },
    )
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/account")
    assert client.get("/login", params={"next": target}).headers["location"] == "/account"


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
def test_same_site_path_refuses_every_other_host(target: str) -> None:
    assert same_site_path(target) is None


def test_same_site_path_keeps_a_path_and_its_query() -> None:
    assert same_site_path("/account?done=profile") == "/account?done=profile"
    assert same_site_path("/account") == "/account"


def test_the_mfa_step_carries_where_to_go_next(
    site: tuple[Client, Container], clock: FakeClock
) -> None:
    from tests.http.test_api import log_in
    from tests.http.test_mfa_code_reuse import confirm_mfa

    client, container = site
    register_and_verify(client, container)
    app, _ = confirm_mfa(client, log_in(client), clock)
    clock.advance(seconds=30)
    page = client.get("/login?next=/account")
    password_step = client.post(
        "/login",
        data={
            "csrf_token": csrf_token(page.text),
            "login": "ada",
            "password": PASSWORD,
            "next": "/account",
        },
    )
    assert 'name="next" value="/account"' in password_step.text
    mfa_token = re.search(r'name="mfa_token" value="([^"]+)"', password_step.text)
    assert mfa_token
    done = client.post(
        "/login/mfa",
        data={
            "csrf_token": csrf_token(password_step.text),
            "mfa_token": mfa_token.group(1),
            "code": app.at(clock.now().timestamp()),
            "next": "//evil.example",
        },
    )
    assert (done.status_code, done.headers["location"]) == (303, "/account")
