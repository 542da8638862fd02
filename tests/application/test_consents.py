"""Consents to other apps on both stores: granted, widened, listed, withdrawn (which ends the
app's sessions of that account), and in the person's trail with the app's id."""

from __future__ import annotations

from uuid import UUID

import pytest

from application.views import Client
from domain.client import ClientSettings
from domain.errors import ClientNotFound, ConsentNotFound
from interfaces.container import Container
from tests.conftest import FakeClock

WIKI = ClientSettings(
    name="Wiki",
    redirect_uris=("https://wiki.example/callback",),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "profile", "email", "offline_access"),
)
HERE = Client(ip="192.0.2.7", user_agent="test")


def _account(container: Container) -> UUID:
    container.registration.register("ann@example.com", "ann", "correct horse battery staple")
    account = container.log.account_for_login("ann")
    assert account is not None
    return account.id


def test_a_consent_is_granted_widened_listed_and_withdrawn(
    container: Container, clock: FakeClock
) -> None:
    account_id = _account(container)
    client_id = container.clients.register(WIKI, "account:admin").client_id
    consents = container.consents
    assert consents.granted(account_id, client_id) == frozenset()
    assert consents.of(account_id) == []

    consents.grant(account_id, client_id, ["openid", "email"], HERE)
    first = consents.of(account_id)
    clock.advance(minutes=5)
    consents.grant(account_id, client_id, ["profile"], HERE)  # widening adds
    consents.grant(account_id, client_id, ["email"], HERE)  # nothing new: no event
    assert consents.granted(account_id, client_id) == {"openid", "email", "profile"}
    [view] = consents.of(account_id)
    assert (view.client_id, view.client_name) == (client_id, "Wiki")
    assert view.scopes == ["email", "openid", "profile"]
    assert view.granted_at == first[0].granted_at  # the first grant's time

    consents.revoke(account_id, client_id, HERE)
    assert consents.granted(account_id, client_id) == frozenset()
    assert consents.of(account_id) == []
    with pytest.raises(ConsentNotFound):
        consents.revoke(account_id, client_id, HERE)

    events = container.log.repository.event_store.get(account_id)
    names = [type(e).__name__ for e in events]
    assert names.count("ConsentGranted") == 2 and names.count("ConsentRevoked") == 1


def test_no_consent_to_an_app_that_is_gone_and_a_removed_app_is_not_listed(
    container: Container,
) -> None:
    account_id = _account(container)
    client_id = container.clients.register(WIKI, "account:admin").client_id
    container.consents.grant(account_id, client_id, ["openid"], HERE)
    container.clients.remove(client_id, "account:admin")
    assert container.consents.of(account_id) == []
    with pytest.raises(ClientNotFound):
        container.consents.grant(account_id, client_id, ["openid"], HERE)
    with pytest.raises(ClientNotFound):
        container.consents.grant(account_id, "not-a-client", ["openid"], HERE)
