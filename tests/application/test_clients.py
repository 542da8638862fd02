"""The OpenID Provider's clients on both stores: registered, listed, changed, their secrets
rotated and checked, removed; each change in the trail with its operator, no secret stored."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from application.clients.registry import Clients, NotCached
from application.read_side.queries import AuditFilter
from domain.client import SECRET_OVERLAP, ClientSettings
from domain.errors import ClientNotFound, Invalid, InvalidClient
from interfaces.container import Container, build
from interfaces.http.oauth2 import provider_edge
from tests.conftest import FakeClock, run_projections

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


WEB = ClientSettings(
    name="Wiki",
    redirect_uris=("https://wiki.example/callback",),
    grant_types=("authorization_code", "refresh_token"),
    scopes=("openid", "profile", "email", "offline_access", "wiki:edit"),
)
SPA = ClientSettings(name="Dashboard", redirect_uris=("https://dash.example/cb",), public=True)


def test_a_client_is_registered_read_listed_and_proves_itself_with_its_secret(
    container: Container,
) -> None:
    clients = container.clients
    issued = clients.register(WEB, "account:admin")
    assert issued.client_secret and len(issued.client_secret) >= 43  # 256 bits, base64url
    public = clients.register(SPA, "account:admin")
    assert public.client_secret is None

    view = clients.client(issued.client_id)
    assert view.name == "Wiki" and not view.public and not view.trusted
    assert view.scopes == ["openid", "profile", "email", "offline_access", "wiki:edit"]
    assert view.web_origins == ["https://wiki.example"]
    assert view.id_token_signed_response_alg == "RS256"
    assert [v.name for v in clients.list()] == ["Dashboard", "Wiki"]

    assert clients.authenticate(issued.client_id, issued.client_secret).client_id == (
        issued.client_id
    )
    assert clients.authenticate(public.client_id, None).public
    for client_id, secret in [
        (issued.client_id, "wrong"),
        (issued.client_id, None),
        (issued.client_id, issued.client_secret + "x"),
        (public.client_id, issued.client_secret),
        ("not-a-uuid", issued.client_secret),
        ("6f0c6a52-1c1e-5b8e-9a57-6f3d2c4b7a10", None),  # the directory's id: no client
    ]:
        with pytest.raises(InvalidClient):
            clients.authenticate(client_id, secret)


def test_no_secret_is_stored_or_read_back(container: Container) -> None:
    clients = container.clients
    issued = clients.register(WEB, "account:admin")
    rotated = clients.rotate_secret(issued.client_id, "account:admin")
    assert issued.client_secret and rotated.client_secret
    stored = b"".join(
        n.state for n in container.log.recorder.select_notifications(start=1, limit=1000)
    )
    for secret in (issued.client_secret, rotated.client_secret):
        assert secret.encode() not in stored
        assert secret not in repr(clients.client(issued.client_id))
        assert secret not in repr(clients.list())


def test_a_rotated_secret_works_for_the_overlap_then_only_the_new_one_does(
    container: Container, clock: FakeClock
) -> None:
    clients = container.clients
    issued = clients.register(WEB, "account:admin")
    rotated = clients.rotate_secret(issued.client_id, "account:admin")
    assert rotated.client_secret != issued.client_secret
    clients.authenticate(issued.client_id, issued.client_secret)
    clients.authenticate(issued.client_id, rotated.client_secret)
    assert clients.client(issued.client_id).previous_secret_valid_until is not None
    clock.advance(seconds=SECRET_OVERLAP.total_seconds())
    with pytest.raises(InvalidClient):
        clients.authenticate(issued.client_id, issued.client_secret)
    clients.authenticate(issued.client_id, rotated.client_secret)
    assert clients.client(issued.client_id).previous_secret_valid_until is None


def test_changes_are_checked_and_a_refused_one_changes_nothing(container: Container) -> None:
    clients = container.clients
    issued = clients.register(WEB, "account:admin")
    before = container.log.recorder.max_notification_id()
    for changes in (
        {"public": True},
        {"redirect_uris": ("https://wiki.example/cb#x",)},
        {"redirect_uris": ()},
        {"grant_types": ("client_credentials",), "scopes": ("openid", "offline_access")},
    ):
        with pytest.raises(Invalid):
            clients.update(issued.client_id, changes, "account:admin")
    assert container.log.recorder.max_notification_id() == before
    changed = clients.update(
        issued.client_id,
        {"name": "Team wiki", "trusted": True, "web_origins": ("https://edit.wiki.example",)},
        "account:admin",
    )
    assert changed.name == "Team wiki" and changed.trusted
    assert changed.web_origins == ["https://edit.wiki.example"]
    assert clients.client(issued.client_id) == changed
    with pytest.raises(Invalid):
        clients.rotate_secret(clients.register(SPA, "account:admin").client_id, "account:admin")


def test_a_removed_client_is_gone_for_every_command(container: Container) -> None:
    clients = container.clients
    issued = clients.register(WEB, "account:admin")
    kept = clients.register(SPA, "account:admin")
    clients.remove(issued.client_id, "account:admin")
    assert [v.client_id for v in clients.list()] == [kept.client_id]
    with pytest.raises(InvalidClient):
        clients.authenticate(issued.client_id, issued.client_secret)
    for command in (
        lambda: clients.client(issued.client_id),
        lambda: clients.update(issued.client_id, {"trusted": True}, "account:admin"),
        lambda: clients.rotate_secret(issued.client_id, "account:admin"),
        lambda: clients.remove(issued.client_id, "account:admin"),
    ):
        with pytest.raises(ClientNotFound):
            command()


def test_simultaneous_registrations_are_all_listed(container: Container) -> None:
    """Each registration writes the directory too: the losers of a race for it rerun."""
    barrier = threading.Barrier(6)
    issued: list[str] = []

    def register(n: int) -> None:
        barrier.wait()
        made = container.clients.register(
            ClientSettings(name=f"App {n}", grant_types=("client_credentials",)), f"cli:{n}"
        )
        issued.append(made.client_id)

    threads = [threading.Thread(target=register, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(v.client_id for v in container.clients.list()) == sorted(issued)
    assert len(issued) == 6


def test_every_change_is_in_the_trail_with_its_operator(container: Container) -> None:
    clients = container.clients
    issued = clients.register(WEB, "account:alice")
    clients.update(issued.client_id, {"trusted": True}, "account:bob")
    clients.rotate_secret(issued.client_id, "cli:carol")
    clients.remove(issued.client_id, "account:alice")
    run_projections(container)
    entries = [
        e
        for e in container.read_side.audit_events(AuditFilter()).entries
        if e.aggregate == "OAuthClient"
    ]
    assert [(e.type, e.details["operator"]) for e in entries] == [
        ("ClientRegistered", "account:alice"),
        ("ClientUpdated", "account:bob"),
        ("ClientSecretRotated", "cli:carol"),
        ("ClientRemoved", "account:alice"),
    ]
    assert {str(e.aggregate_id) for e in entries} == {issued.client_id}
    assert entries[0].details["settings"]["redirect_uris"] == ["https://wiki.example/callback"]
    assert all("secret_digest" not in e.details for e in entries)
    assert all(e.account_id is None and e.session_id is None for e in entries)


def test_the_directory_of_clients_loads_from_a_snapshot(container: Container) -> None:
    """The directory gains an event per registration; snapshots keep its load short."""
    from domain.client import DIRECTORY_ID

    service = ClientSettings(name="Service", grant_types=("client_credentials",))
    issued = [container.clients.register(service, "cli:ops").client_id for _ in range(55)]
    container.clients.remove(issued[0], "cli:ops")
    assert container.log.snapshots is not None
    assert list(container.log.snapshots.get(DIRECTORY_ID))
    assert sorted(v.client_id for v in container.clients.list()) == sorted(issued[1:])


@pytest.fixture
def other_process(container: Container, clock: FakeClock) -> Iterator[Container]:
    """A second container on the same stores, as a second server process would be."""
    other = build(container.settings, clock=clock)
    yield other
    other.close()


MACHINE = ClientSettings(name="Billing", grant_types=("client_credentials",), scopes=("a:read",))


def test_a_client_removed_by_another_process_stops_working_within_the_cache_time(
    container: Container, other_process: Container, clock: FakeClock
) -> None:
    issued = other_process.clients.register(MACHINE, "account:admin")
    assert issued.client_secret is not None
    clients = container.clients
    clients.authenticate(issued.client_id, issued.client_secret)  # now known here
    token = container.machine_tokens.issue(clients.known(issued.client_id), ["a:read"], "x")
    assert run(container.machine_tokens.introspect(token.access_token))["active"]

    other_process.clients.remove(issued.client_id, "account:admin")
    # Known here: neither call reads the event store until the cache time is over ...
    clients.authenticate(issued.client_id, issued.client_secret)
    assert run(container.machine_tokens.introspect(token.access_token))["active"]
    clock.advance(seconds=container.settings.client_cache_seconds)
    # ... and then both read it, and the client is gone.
    with pytest.raises(InvalidClient):
        clients.authenticate(issued.client_id, issued.client_secret)
    assert run(container.machine_tokens.introspect(token.access_token)) == {"active": False}
    with pytest.raises(ClientNotFound):
        clients.known(issued.client_id)


def test_a_secret_rotated_out_by_another_process_stops_working_within_the_cache_time(
    container: Container, other_process: Container, clock: FakeClock
) -> None:
    clients = container.clients
    issued = other_process.clients.register(MACHINE, "account:admin")
    old = issued.client_secret
    assert old is not None
    clients.authenticate(issued.client_id, old)  # known here with its first secret
    new = other_process.clients.rotate_secret(issued.client_id, "account:admin").client_secret
    assert new is not None
    clients.authenticate(issued.client_id, new)  # not known here by it: read, works at once
    # A second rotation ends the first secret's overlap at once (the new one has its own) ...
    newer = other_process.clients.rotate_secret(issued.client_id, "account:admin").client_secret
    assert newer is not None
    clients.authenticate(issued.client_id, old)  # ... but here it is known, and not read
    clock.advance(seconds=container.settings.client_cache_seconds)
    with pytest.raises(InvalidClient):
        clients.authenticate(issued.client_id, old)
    clients.authenticate(issued.client_id, new)
    clients.authenticate(issued.client_id, newer)
    clock.advance(seconds=SECRET_OVERLAP.total_seconds())
    with pytest.raises(InvalidClient):
        clients.authenticate(issued.client_id, new)
    clients.authenticate(issued.client_id, newer)


def test_a_change_made_in_this_process_applies_here_at_once(container: Container) -> None:
    clients = container.clients
    issued = clients.register(MACHINE, "account:admin")
    assert issued.client_secret is not None
    clients.authenticate(issued.client_id, issued.client_secret)
    rotated = clients.rotate_secret(issued.client_id, "account:admin").client_secret
    assert rotated is not None
    clients.update(issued.client_id, {"name": "Invoices"}, "account:admin")
    assert clients.authenticate(issued.client_id, rotated).name == "Invoices"
    clients.remove(issued.client_id, "account:admin")
    for secret in (issued.client_secret, rotated):
        with pytest.raises(InvalidClient):
            clients.authenticate(issued.client_id, secret)
    with pytest.raises(ClientNotFound):
        clients.known(issued.client_id)


def test_cached_only_answers_from_this_process_copy_and_never_reads_the_event_store(
    container: Container, other_process: Container, clock: FakeClock
) -> None:
    """What the event loop may ask (introspection without a thread): a call that would read
    the event store raises NotCached, so the caller asks again in a thread."""
    issued = other_process.clients.register(MACHINE, "account:admin")
    secret = issued.client_secret
    assert secret is not None
    clients = container.clients
    with Clients.cached_only():  # never read here yet
        with pytest.raises(NotCached):
            clients.authenticate(issued.client_id, secret)
        with pytest.raises(NotCached):
            clients.known(issued.client_id)
    clients.authenticate(issued.client_id, secret)  # read, and now known here
    with Clients.cached_only():
        assert clients.authenticate(issued.client_id, secret).client_id == issued.client_id
        assert clients.known(issued.client_id).client_id == issued.client_id
        # A secret this copy does not hold may be a rotation since: only the store can say.
        with pytest.raises(NotCached):
            clients.authenticate(issued.client_id, "not the secret")
    with pytest.raises(InvalidClient):
        clients.authenticate(issued.client_id, "not the secret")
    clock.advance(seconds=container.settings.client_cache_seconds)
    with Clients.cached_only(), pytest.raises(NotCached):  # the copy is too old
        clients.known(issued.client_id)
    assert clients.known(issued.client_id).client_id == issued.client_id  # outside: read


def test_the_copy_vouches_only_for_the_right_secret_of_a_client_it_holds(
    container: Container, other_process: Container, clock: FakeClock
) -> None:
    issued = other_process.clients.register(MACHINE, "account:admin")
    secret = issued.client_secret
    assert secret is not None
    clients = container.clients
    assert not clients.vouches(issued.client_id, secret)  # not read here yet
    clients.authenticate(issued.client_id, secret)
    assert clients.vouches(issued.client_id, secret)
    assert not clients.vouches(issued.client_id, "wrong")
    assert not clients.vouches(issued.client_id, None)  # a confidential client needs one
    assert not clients.vouches("", None)
    clock.advance(seconds=container.settings.client_cache_seconds)
    assert not clients.vouches(issued.client_id, secret)  # the copy is too old


def test_an_authorization_request_reads_its_client_from_this_process_copy(
    container: Container, other_process: Container, clock: FakeClock
) -> None:
    """The authorization endpoint asks for its client twice a request (Authlib's query_client):
    from this process's copy, like an authentication, so a redirect URI another process took
    out still matches here until CLIENT_CACHE_SECONDS have passed, and then no longer."""
    server = provider_edge(container).server
    issued = other_process.clients.register(WEB, "account:admin")
    callback = WEB.redirect_uris[0]
    client = server.query_client(issued.client_id)
    assert client is not None and client.check_redirect_uri(callback)
    moved = ("https://wiki.example/moved",)
    other_process.clients.update(issued.client_id, {"redirect_uris": moved}, "account:admin")
    client = server.query_client(issued.client_id)
    assert client is not None and client.check_redirect_uri(callback)  # the copy
    clock.advance(seconds=container.settings.client_cache_seconds)
    client = server.query_client(issued.client_id)
    assert client is not None and not client.check_redirect_uri(callback)
    assert client.check_redirect_uri(moved[0])
    other_process.clients.remove(issued.client_id, "account:admin")
    clock.advance(seconds=container.settings.client_cache_seconds)
    assert server.query_client(issued.client_id) is None
