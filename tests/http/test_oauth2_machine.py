"""The OpenID Provider's machine-to-machine slice through the real app: client_credentials at
/oauth2/token, introspection, revocation, discovery. Every bad request is an RFC 6749 error
that records nothing; a resource server verifies the token offline with PyJWT."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import jwt
import pytest

from application.audit.trail import trail_entry
from application.clients.registry import ClientView
from domain.client import ClientSettings, OAuthClient
from interfaces.container import Container
from tests.conftest import FakeClock, event_count
from tests.http.test_api import Client, bearer, log_in, register_and_verify

API = "https://api.example/"
SETTINGS = ClientSettings(
    name="Billing",
    grant_types=("client_credentials",),
    scopes=("orders:read", "orders:write"),
    resources=(API,),
)


def register(container: Container, settings: ClientSettings = SETTINGS) -> tuple[str, str]:
    issued = container.clients.register(settings, "test")
    assert issued.client_secret is not None
    return issued.client_id, issued.client_secret


def token(client: Client, client_id: str, secret: str, **form: Any) -> Any:
    return client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", **form},
        auth=(client_id, secret),
    )


def introspect(client: Client, credentials: tuple[str, str], access_token: str) -> Any:
    answer = client.post("/oauth2/introspect", data={"token": access_token}, auth=credentials)
    assert answer.status_code == 200, answer.text
    return answer.json()


def client_version(container: Container, client_id: str) -> int:
    found = container.log.find(UUID(client_id), OAuthClient)
    assert found is not None
    return int(found.version)


def test_a_client_gets_a_token_an_api_verifies_offline(
    client: Client, container: Container
) -> None:
    client_id, secret = register(container)
    answer = token(client, client_id, secret, scope="orders:read", resource=API)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == container.settings.access_token_ttl
    assert body["scope"] == "orders:read"
    assert "refresh_token" not in body

    # The resource server: the key from the JWKS by kid, RS256 only, its own audience.
    keys = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json())
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    key = next(k for k in keys.keys if k.key_id == header["kid"])
    claims = jwt.decode(
        body["access_token"],
        key,
        algorithms=["RS256"],
        audience=API,
        issuer=container.settings.issuer,
        options={"verify_exp": False},  # the fake clock is not the wall clock
    )
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["scope"] == "orders:read"
    assert claims["exp"] - claims["iat"] == container.settings.access_token_ttl
    UUID(claims["jti"])
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            body["access_token"],
            key,
            algorithms=["RS256"],
            audience="https://other.example/",
            options={"verify_exp": False},
        )


def test_client_secret_post_no_resource_and_no_scope(client: Client, container: Container) -> None:
    client_id, secret = register(container)
    answer = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "orders:read orders:write"  # all it may have
    claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == container.settings.issuer


def test_the_trail_shows_the_first_token_then_a_count_a_minute(
    client: Client, container: Container, clock: FakeClock
) -> None:
    client_id, secret = register(container)
    before = client_version(container, client_id)
    for _ in range(3):
        assert token(client, client_id, secret).status_code == 200
    assert client_version(container, client_id) == before + 1  # the first only
    clock.advance(seconds=61)
    assert token(client, client_id, secret).status_code == 200
    found = container.log.find(UUID(client_id), OAuthClient)
    assert found is not None and found.version == before + 2
    last = list(container.log.events.get(UUID(client_id)))[-1]
    assert type(last).__name__ == "ClientTokensIssued" and last.count == 3
    shown = trail_entry(last, None).details  # the trail shows the count and since when
    assert shown["count"] == 3 and shown["since"]


def _other(container: Container) -> tuple[str, str]:
    return register(
        container, ClientSettings(name="Wiki", redirect_uris=("https://wiki.example/cb",))
    )


BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("wrong secret (basic)", {"auth": "wrong"}, 401, "invalid_client"),
    ("wrong secret (post)", {"post": "wrong"}, 401, "invalid_client"),
    ("no credentials", {"auth": None}, 401, "invalid_client"),
    ("unknown client", {"auth": "unknown"}, 401, "invalid_client"),
    ("not a client_credentials client", {"auth": "other"}, 400, "unauthorized_client"),
    ("the password grant", {"form": {"grant_type": "password"}}, 400, "unsupported_grant_type"),
    ("the implicit kind", {"form": {"grant_type": "implicit"}}, 400, "unsupported_grant_type"),
    ("a scope not its own", {"form": {"scope": "orders:read admin"}}, 400, "invalid_scope"),
    ("openid without a person", {"form": {"scope": "openid"}}, 400, "invalid_scope"),
    ("a resource not its own", {"form": {"resource": "https://x.example/"}}, 400, "invalid_target"),
    ("two resources", {"resources": [API, "https://x.example/"]}, 400, "invalid_target"),
    ("a repeated parameter", {"repeat": "scope"}, 400, "invalid_request"),
    ("a JSON body", {"json": True}, 400, "invalid_request"),
    ("two ways to authenticate", {"post": "both"}, 400, "invalid_request"),
]


@pytest.mark.parametrize(
    ("case", "how", "status", "error"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS]
)
def test_each_bad_token_request_is_an_rfc_6749_error_that_records_nothing(
    client: Client,
    container: Container,
    case: str,
    how: dict[str, Any],
    status: int,
    error: str,
) -> None:
    client_id, secret = register(container)
    other_id, other_secret = _other(container)
    before = event_count(container)
    form: dict[str, Any] = {"grant_type": "client_credentials", **how.get("form", {})}
    auth: Any = (client_id, secret)
    if "auth" in how:
        auth = {
            "wrong": (client_id, secret + "x"),
            None: None,
            "unknown": ("9a1d2b44-8a8b-4b1e-9d6c-3f7c1e2a0b55", secret),
            "other": (other_id, other_secret),
        }[how["auth"]]
    if "post" in how:
        form["client_id"] = client_id
        form["client_secret"] = secret + "x" if how["post"] == "wrong" else secret
        auth = (client_id, secret) if how["post"] == "both" else None
    content: Any = list(form.items())
    if "resources" in how:
        content += [("resource", r) for r in how["resources"]]
    if "repeat" in how:
        content += [(how["repeat"], "orders:read"), (how["repeat"], "orders:write")]
    if "json" in how:
        answer = client.post("/oauth2/token", json=form, auth=auth)
    else:
        answer = client.post(
            "/oauth2/token",
            content="&".join(f"{k}={v}" for k, v in content),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=auth,
        )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error
    assert answer.headers["cache-control"] == "no-store"
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Basic")
    assert event_count(container) == before


def test_a_public_client_cannot_use_client_credentials(
    client: Client, container: Container
) -> None:
    public = container.clients.register(
        ClientSettings(name="App", public=True, redirect_uris=("http://127.0.0.1/cb",)), "test"
    )
    answer = client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": public.client_id},
    )
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_introspection_and_revocation(
    client: Client, container: Container, clock: FakeClock
) -> None:
    a = register(container)
    b = register(container, SETTINGS)
    issued = token(client, *a).json()["access_token"]

    seen = introspect(client, a, issued)
    assert seen["active"] is True and seen["client_id"] == a[0] and seen["scope"]
    # Any registered client may introspect what it holds (an API is a client of its own).
    assert introspect(client, b, issued)["active"] is True
    for nonsense in ("", "x.y.z", log_in_token(client, container)):
        assert introspect(client, a, nonsense) == {"active": False}
    unauthenticated = client.post("/oauth2/introspect", data={"token": issued})
    assert unauthenticated.status_code == 401

    # B may not revoke A's token: refused, and the token still works.
    refused = client.post("/oauth2/revoke", data={"token": issued}, auth=b)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    assert introspect(client, a, issued)["active"] is True
    # Unknown tokens are answered as revoked ones are (RFC 7009, 2.2).
    assert client.post("/oauth2/revoke", data={"token": "nonsense"}, auth=a).status_code == 200
    revoked = client.post("/oauth2/revoke", data={"token": issued}, auth=a)
    assert revoked.status_code == 200, revoked.text
    assert introspect(client, a, issued) == {"active": False}

    expiring = token(client, *a).json()["access_token"]
    assert introspect(client, a, expiring)["active"] is True
    clock.advance(seconds=container.settings.access_token_ttl)
    assert introspect(client, a, expiring) == {"active": False}


def log_in_token(client: Client, container: Container) -> str:
    register_and_verify(client, container)
    return str(log_in(client)["access_token"])


def test_a_removed_clients_tokens_are_inactive_and_never_a_session_here(
    client: Client, container: Container
) -> None:
    a = register(container)
    b = register(container)
    issued = token(client, *a).json()["access_token"]
    me = client.get("/api/users/me", headers=bearer({"access_token": issued}))
    assert me.status_code == 401
    container.clients.remove(a[0], "test")
    assert introspect(client, b, issued) == {"active": False}
    assert token(client, *a).status_code == 401


def test_a_rotated_secret_works_through_the_overlap_only(
    client: Client, container: Container, clock: FakeClock
) -> None:
    client_id, old = register(container)
    new = container.clients.rotate_secret(client_id, "test").client_secret
    assert new is not None
    assert token(client, client_id, new).status_code == 200
    assert token(client, client_id, old).status_code == 200
    clock.advance(hours=24, seconds=1)
    assert token(client, client_id, new).status_code == 200
    assert token(client, client_id, old).status_code == 401


def test_failed_client_authentication_is_throttled_per_address(
    client: Client, container: Container
) -> None:
    client_id, secret = register(container)
    for _ in range(20):
        assert token(client, client_id, "wrong").status_code == 401
    limited = token(client, client_id, "wrong")
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["retry-after"]) >= 1
    # The right secret, which this process's copy of the client vouches for, cannot be a
    # guess: a client sharing the address with a guesser goes on working.
    assert token(client, client_id, secret).status_code == 200
    other_id, other_secret = register(container)  # not read here yet: its check may fail
    assert token(client, other_id, other_secret).status_code == 429


def test_parallel_wrong_secrets_do_not_burst_past_the_limit(
    client: Client, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each attempt takes its place in the allowance before the secret is checked: a check
    before and a count after let every one of a parallel burst through the check."""
    client_id, _ = register(container)
    authenticate = container.clients.authenticate

    def slowly(given_id: str, secret: str | None) -> ClientView:
        time.sleep(0.2)  # an event store that answers slowly: the attempts overlap
        return authenticate(given_id, secret)

    monkeypatch.setattr(container.clients, "authenticate", slowly)
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda _: token(client, client_id, "wrong"), range(30)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * 20 + [429] * 10, statuses


def test_introspection_answers_on_the_event_loop_once_its_client_is_known_here(
    client: Client, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client this process holds a copy of is checked on the event loop, with no thread and
    back; one it must read first (or a secret its copy does not hold) is asked again in a
    thread, where waiting for the event store is allowed, with the same answer."""
    client_id, secret = register(container)
    issued = token(client, client_id, secret).json()["access_token"]
    threads: dict[str, list[int]] = {"inspect": [], "revocations": []}
    inspect, unless_revoked = (
        container.machine_tokens.inspect,
        container.machine_tokens.unless_revoked,
    )

    def inspecting(value: str) -> dict[str, Any]:
        threads["inspect"].append(threading.get_ident())
        return inspect(value)

    async def asking(answer: dict[str, Any]) -> dict[str, Any]:
        threads["revocations"].append(threading.get_ident())  # always on the loop
        return await unless_revoked(answer)

    monkeypatch.setattr(container.machine_tokens, "inspect", inspecting)
    monkeypatch.setattr(container.machine_tokens, "unless_revoked", asking)
    container.clients._known.clear()  # as in a process that has not read it yet
    assert introspect(client, (client_id, secret), issued)["active"]
    assert introspect(client, (client_id, secret), issued)["active"]
    loop = threads["revocations"][0]
    assert threads["inspect"][0] != loop, "read first: in a thread"
    assert threads["inspect"][1] == loop, "known here: on the loop"
    wrong = client.post("/oauth2/introspect", data={"token": issued}, auth=(client_id, "wrong"))
    assert wrong.status_code == 401, "a secret the copy does not hold is read, and refused"


def test_failed_introspections_count_against_the_allowance_too(
    client: Client, container: Container
) -> None:
    client_id, secret = register(container)
    issued = token(client, client_id, secret).json()["access_token"]
    for _ in range(19):  # the token's own request was a success: nothing taken
        wrong = client.post("/oauth2/introspect", data={"token": issued}, auth=(client_id, "wrong"))
        assert wrong.status_code == 401
    assert introspect(client, (client_id, secret), issued)["active"]  # successes take nothing
    assert token(client, client_id, "wrong").status_code == 401  # the 20th failure
    limited = client.post("/oauth2/introspect", data={"token": issued}, auth=(client_id, "x"))
    assert limited.status_code == 429, limited.text
    assert introspect(client, (client_id, secret), issued)["active"]


def test_a_busy_client_is_never_throttled(client: Client, container: Container) -> None:
    client_id, secret = register(container)
    for _ in range(60):
        assert token(client, client_id, secret).status_code == 200


def test_a_busy_client_with_many_requests_in_flight_is_never_throttled(
    client: Client, container: Container
) -> None:
    """Each attempt the process could not vouch for held a place in the allowance until it
    was answered: 40 requests in flight at once from an API's pool got 429s."""
    client_id, secret = register(container)
    issued = token(client, client_id, secret).json()["access_token"]
    with ThreadPoolExecutor(40) as pool:
        answers = list(
            pool.map(
                lambda n: (
                    token(client, client_id, secret)
                    if n % 2
                    else client.post(
                        "/oauth2/introspect", data={"token": issued}, auth=(client_id, secret)
                    )
                ),
                range(80),
            )
        )
    assert [answer.status_code for answer in answers] == [200] * 80


def test_discovery_lists_what_exists(client: Client, container: Container) -> None:
    found = client.get("/.well-known/openid-configuration")
    assert found.status_code == 200
    meta = found.json()
    base = container.settings.public_url.rstrip("/")
    assert meta["issuer"] == container.settings.issuer
    assert meta["jwks_uri"] == f"{base}/.well-known/jwks.json"
    assert meta["token_endpoint"] == f"{base}/oauth2/token"
    assert meta["introspection_endpoint"] == f"{base}/oauth2/introspect"
    assert meta["revocation_endpoint"] == f"{base}/oauth2/revoke"
    assert meta["grant_types_supported"] == [
        "authorization_code",
        "refresh_token",
        "client_credentials",
    ]
    assert meta["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",  # a public client: PKCE is its proof
    ]
    assert meta["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert meta["authorization_endpoint"] == f"{base}/oauth2/authorize"
    assert meta["userinfo_endpoint"] == f"{base}/oauth2/userinfo"
    assert meta["end_session_endpoint"] == f"{base}/oauth2/logout"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert meta["prompt_values_supported"] == ["none", "login", "consent"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert {"sub", "email", "email_verified", "preferred_username", "name", "sid"} <= set(
        meta["claims_supported"]
    )
