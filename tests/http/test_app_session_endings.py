"""What ends a person's sessions ends the apps' sessions too, through the real app on both
stores: signing out everywhere, a password change or reset, an admin disabling or erasing the account,
the person erasing it, and the person taking an app's access back (the API and the account
page). After each, the app's refresh token is refused at /oauth2/token, introspection answers
inactive, and userinfo 401."""

from __future__ import annotations

import re
from typing import Any

import pytest

from interfaces.container import Container
from tests.application.test_account_security import NEW, reset_link, token_of
from tests.application.test_use_cases import PASSWORD
from tests.http.test_api import Client, bearer, log_in, register_and_verify
from tests.http.test_oauth2_person import app_tokens
from tests.http.test_pages import csrf_token


def admin(client: Client, container: Container) -> dict[str, str]:
    register_and_verify(client, container, "root")
    container.administration.grant_role("root", "admin", operator="test")
    return bearer(log_in(client, "root"))


def end(ending: str, client: Client, container: Container, client_id: str) -> None:
    me = bearer(log_in(client))
    account_id = client.get("/api/users/me", headers=me).json()["id"]
    if ending == "everywhere":
        answer = client.post("/api/auth/logout", json={"all_sessions": True}, headers=me)
    elif ending == "password_changed":
        answer = client.put(
            "/api/users/me/password",
            json={"current_password": PASSWORD, "new_password": NEW},
            headers=me,
        )
    elif ending == "password_reset":
        client.post("/api/auth/forgot-password", json={"email": "ada@example.com"})
        token = token_of(reset_link(container, "ada@example.com"))
        answer = client.post("/api/auth/reset-password", json={"token": token, "new_password": NEW})
    elif ending == "disabled":
        answer = client.post(
            f"/api/admin/accounts/{account_id}/disable", headers=admin(client, container)
        )
    elif ending == "erased_by_admin":
        answer = client.delete(
            f"/api/admin/accounts/{account_id}", headers=admin(client, container)
        )
    elif ending == "erased":
        answer = client.request("DELETE", "/api/users/me", json={"password": PASSWORD}, headers=me)
    elif ending == "consent_revoked":
        answer = client.delete(f"/api/users/me/consents/{client_id}", headers=me)
    else:  # the account page's Revoke button
        page = client.get("/account").text
        assert re.search(rf'name="client_id" value="{client_id}"', page), page
        answer = client.post(
            "/account/consents/revoke",
            data={"client_id": client_id, "csrf_token": csrf_token(page)},
        )
        assert answer.headers["location"] == "/account?done=consent-revoked"
    assert answer.status_code in (200, 202, 204, 303), (ending, answer.text)


def app_standing(
    client: Client, client_id: str, secret: str | None, tokens: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """What the app's tokens get now, and the refresh token the refresh turned to (if any)."""
    assert secret is not None
    refreshed = client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client_id, secret),
    )
    introspected = client.post(
        "/oauth2/introspect", data={"token": tokens["access_token"]}, auth=(client_id, secret)
    )
    userinfo = client.get("/oauth2/userinfo", headers=bearer(tokens))
    standing = {
        "refresh": refreshed.status_code,
        "refresh_error": refreshed.json().get("error"),
        "access_active": introspected.json()["active"],
        "userinfo": userinfo.status_code,
    }
    return standing, refreshed.json().get("refresh_token")


@pytest.mark.parametrize(
    "ending",
    [
        "everywhere",
        "password_changed",
        "password_reset",
        "disabled",
        "erased_by_admin",
        "erased",
        "consent_revoked",
        "consent_revoked_on_the_page",
    ],
)
def test_what_ends_the_persons_sessions_ends_the_apps(
    client: Client, container: Container, ending: str
) -> None:
    client_id, secret, tokens = app_tokens(client, container)
    before, turned = app_standing(client, client_id, secret, tokens)
    assert before == {
        "refresh": 200,
        "refresh_error": None,
        "access_active": True,
        "userinfo": 200,
    }
    # The refresh turned the token: the next one is the one the ending must stop (the spent
    # one would be refused anyway, as a reuse).
    assert turned is not None
    tokens = {**tokens, "refresh_token": turned}

    end(ending, client, container, client_id)

    after, _ = app_standing(client, client_id, secret, tokens)
    assert after == {
        "refresh": 400,
        "refresh_error": "invalid_grant",
        "access_active": False,
        "userinfo": 401,
    }, ending
