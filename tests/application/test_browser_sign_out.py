"""Signing a browser session out (the pages' sign-out, RP-Initiated Logout) on both stores: the
apps' sessions started from it end too, but those given offline_access, and those started
from another browser's sign-in; signing out everywhere ends them all."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from domain.client import ClientSettings
from domain.errors import InvalidRefreshToken
from interfaces.container import Container
from tests.application.test_use_cases import CLIENT, PASSWORD, verified
from tests.conftest import authenticated, run_async

WIKI = ClientSettings(
    name="Wiki",
    redirect_uris=("https://wiki.example/callback",),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "offline_access"),
)


def test_a_browser_sign_out_ends_its_online_app_sessions(container: Container) -> None:
    verified(container)
    browser = authenticated(container, container.login.log_in("ada", PASSWORD, CLIENT).access_token)
    other_browser = container.login.log_in("ada", PASSWORD, CLIENT)
    client_id = container.clients.register(WIKI, "account:admin").client_id
    container.consents.grant(browser.account_id, client_id, ["openid", "offline_access"], CLIENT)

    def started(from_session: UUID, scopes: list[str]) -> str:
        return container.sessions.start_app(
            browser.account_id,
            client_id,
            from_session,
            CLIENT,
            uuid4(),
            scopes,
            "https://t.example",
        ).refresh_token

    other_session = authenticated(container, other_browser.access_token).session_id
    online = started(browser.session_id, ["openid"])
    offline = started(browser.session_id, ["openid", "offline_access"])
    elsewhere = started(other_session, ["openid"])

    container.sessions.sign_out_browser(browser, None)
    with pytest.raises(InvalidRefreshToken):
        run_async(container.sessions.rotate_app(online, client_id))
    offline = run_async(container.sessions.rotate_app(offline, client_id)).refresh_token
    elsewhere = run_async(container.sessions.rotate_app(elsewhere, client_id)).refresh_token

    everywhere = authenticated(container, other_browser.access_token)
    container.sessions.log_out(everywhere, None, all_sessions=True)
    for refresh_token in (offline, elsewhere):
        with pytest.raises(InvalidRefreshToken):
            run_async(container.sessions.rotate_app(refresh_token, client_id))
