"""Webhook endpoints: what may be registered, how the secret rotates, when an endpoint stops;
and the public event catalogue: which internal events become which public bodies."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.account import ERASED, Account
from domain.errors import (
    EmptyEventList,
    Invalid,
    PrivateWebhookTarget,
    UnknownEventType,
    WebhookNotFound,
    WebhookUrlRefused,
)
from domain.lockout import LockoutPolicy
from domain.session import Session
from domain.webhook import (
    FAILING_FOR,
    SECRET_OVERLAP,
    EndpointSettings,
    Reach,
    WebhookEndpoint,
    is_public,
)
from domain.webhook_events import CATALOGUE, PUBLISHED, account_of, public_event

T0 = datetime(2026, 1, 1, tzinfo=UTC)
URL = "https://hooks.example/tessera"


def settings(**changes: Any) -> EndpointSettings:
    return EndpointSettings(**{"url": URL, "events": ("account.registered",), **changes})


def created(reach: Reach | None = None, **changes: Any) -> WebhookEndpoint:
    return WebhookEndpoint.create(uuid4(), settings(**changes), "sealed-1", "account:a", T0, reach)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example/x",  # not https
        "ftp://hooks.example/x",
        "/relative/path",
        "hooks.example/x",
        "https://user:pw@hooks.example/x",  # userinfo
        "https://hooks.example/x#fragment",
        "https://hooks.example/x y",
        "https://hooks.example:99999/x",
        "http://127.0.0.1:8080/x",  # loopback http only where allowed
    ],
)
def test_a_url_that_is_not_absolute_https_is_refused(url: str) -> None:
    with pytest.raises(WebhookUrlRefused):
        created(url=url)


def test_http_on_loopback_is_allowed_only_with_the_setting() -> None:
    reach = Reach(http_loopback=True)
    for url in ("http://127.0.0.1:8080/x", "http://[::1]:9/x", "http://localhost:9/x"):
        assert created(reach, url=url).settings.url == url
    with pytest.raises(WebhookUrlRefused):
        created(reach, url="http://hooks.example/x")


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/x",
        "https://169.254.169.254/latest/meta-data",
        "https://192.168.1.10/x",
        "https://[::1]/x",
        "https://127.0.0.1/x",
        "https://[fd00:ec2::254]/x",
        "https://[::ffff:10.0.0.1]/x",
        "https://100.64.0.1/x",
    ],
)
def test_a_literal_private_address_is_refused(url: str) -> None:
    with pytest.raises(PrivateWebhookTarget):
        created(url=url)
    assert created(Reach(private_targets=True), url=url).settings.url == url


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07::1", True),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("169.254.169.254", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("64:ff9b::5db8:d70e", True),  # NAT64 of 93.184.215.14
        # IPv4-compatible (deprecated), SIIT-translated and local-use NAT64 (RFC 8215): no
        # public receiver has such an address, and a stack may reach the IPv4 inside.
        ("::a9fe:a9fe", False),
        ("::5db8:d70e", False),
        ("::ffff:0:a9fe:a9fe", False),
        ("64:ff9b:1::a9fe:a9fe", False),
        ("64:ff9b:1:a9:fe:a9fe::", False),
        ("0.0.0.0", False),  # noqa: S104 - an address judged, not bound
        ("224.0.0.1", False),
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_loopback_is_reachable_only_with_the_loopback_setting() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    assert not Reach().allows(loopback)
    assert Reach(http_loopback=True).allows(loopback)
    assert not Reach(http_loopback=True).allows(ipaddress.ip_address("10.0.0.1"))
    assert Reach(private_targets=True).allows(ipaddress.ip_address("10.0.0.1"))


def test_events_must_be_known_and_at_least_one() -> None:
    with pytest.raises(EmptyEventList):
        created(events=())
    with pytest.raises(UnknownEventType) as refused:
        created(events=("account.registered", "account.Registered"))
    assert [e.field for e in refused.value.errors] == ["events[1]"]
    assert created(events=("session.started", "session.started")).settings.events == (
        "session.started",
    )


def test_the_description_is_trimmed_and_bounded() -> None:
    assert created(description="  CRM  ").settings.description == "CRM"
    with pytest.raises(Invalid):
        created(description="x" * 201)


def test_update_changes_what_is_given_and_checks_it() -> None:
    endpoint = created()
    assert endpoint.update({"events": ["session.started"]}, "account:a", T0, Reach())
    assert endpoint.settings.events == ("session.started",)
    assert not endpoint.update({"description": ""}, "account:a", T0, Reach())
    with pytest.raises(WebhookUrlRefused):
        endpoint.update({"url": "http://hooks.example"}, "account:a", T0, Reach())
    with pytest.raises(Invalid):
        endpoint.update({"secret": "x"}, "account:a", T0, Reach())


def test_both_secrets_sign_during_the_overlap_after_a_rotation() -> None:
    endpoint = created()
    assert endpoint.signing_secrets(T0) == ["sealed-1"]
    endpoint.rotate_secret("sealed-2", "account:a", T0)
    assert endpoint.signing_secrets(T0 + SECRET_OVERLAP - timedelta(seconds=1)) == [
        "sealed-2",
        "sealed-1",
    ]
    assert endpoint.signing_secrets(T0 + SECRET_OVERLAP) == ["sealed-2"]
    endpoint.rotate_secret("sealed-3", "account:a", T0 + timedelta(hours=1))
    assert endpoint.signing_secrets(T0 + timedelta(hours=2)) == ["sealed-3", "sealed-2"]


def test_a_gone_receiver_or_five_days_of_failures_disable_it() -> None:
    endpoint = created()
    endpoint.gone(T0)
    assert not endpoint.enabled and endpoint.disabled_reason == "gone"
    failing = created()
    assert not failing.failing_since(T0, T0 + FAILING_FOR - timedelta(seconds=1))
    assert failing.enabled
    assert failing.failing_since(T0, T0 + FAILING_FOR)
    assert failing.disabled_reason == "failing"
    assert not failing.failing_since(T0, T0 + FAILING_FOR * 2)  # once
    failing.update({"enabled": True}, "account:a", T0, Reach())
    assert failing.enabled


def test_a_removed_endpoint_is_not_found() -> None:
    endpoint = created()
    endpoint.remove("account:a", T0)
    with pytest.raises(WebhookNotFound):
        endpoint.rotate_secret("sealed-2", "account:a", T0)
    with pytest.raises(WebhookNotFound):
        endpoint.update({"description": "x"}, "account:a", T0, Reach())


def test_every_public_type_has_a_mapping_and_a_schema() -> None:
    assert len(set(PUBLISHED)) == len(CATALOGUE)
    for kind in CATALOGUE.values():
        schema = kind.schema()
        assert schema["properties"]["type"] == {"const": kind.name}
        assert "account_id" in schema["properties"]["data"]["properties"]


def test_registration_becomes_a_public_event_with_personal_fields_apart() -> None:
    account = Account(email="ada@example.com", username="ada", password_hash="h", timestamp=T0)
    (registered,) = account.collect_events()
    assert account_of(registered) == account.id
    public = public_event(registered, account.id)
    assert public is not None and public.type == "account.registered"
    assert public.body(None) == {
        "type": "account.registered",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {"account_id": str(account.id)},
    }
    assert public.body(public.personal)["data"] == {
        "account_id": str(account.id),
        "email": "ada@example.com",
        "username": "ada",
    }
    # Erased since: what no longer opens is left out.
    assert public.body({"email": ERASED, "username": ERASED})["data"] == {
        "account_id": str(account.id)
    }


def test_session_events_carry_ids_and_kinds_never_addresses() -> None:
    account_id = uuid4()
    session = Session(
        id=uuid4(),
        account_id=account_id,
        refresh_token_hash="h",
        expires_at=T0 + timedelta(days=30),
        user_agent="Firefox",
        ip="203.0.113.9",
        timestamp=T0,
    )
    session.reuse_detected(T0 + timedelta(minutes=1))
    started, reused, revoked = session.collect_events()
    assert account_of(started) == account_id
    assert account_of(revoked) is None  # the caller knows the session's account
    bodies = [public_event(e, account_id) for e in (started, reused, revoked)]
    assert [b.type for b in bodies if b] == [
        "session.started",
        "session.refresh_token_reused",
        "session.ended",
    ]
    assert bodies[0] is not None and bodies[0].body(None)["data"] == {
        "account_id": str(account_id),
        "session_id": str(session.id),
        "expires_at": "2026-01-31T00:00:00Z",
    }
    assert bodies[2] is not None and bodies[2].data["reason"] == "refresh_token_reuse"
    assert "ip" not in str(bodies) and "Firefox" not in str(bodies)


def test_a_lock_says_until_when_and_a_failed_login_makes_nothing() -> None:
    account = Account(email="ada@example.com", username="ada", password_hash="h", timestamp=T0)
    account.collect_events()
    account.fail_login(T0, LockoutPolicy(threshold=1, base=timedelta(minutes=5)))
    failed, locked = account.collect_events()
    assert public_event(failed, account.id) is None
    public = public_event(locked, account.id)
    assert public is not None and public.body(None)["data"] == {
        "account_id": str(account.id),
        "until": "2026-01-01T00:05:00Z",
        "by_admin": False,
    }


def test_consents_to_apps_are_public_events_with_the_client_and_scopes() -> None:
    account = Account(email="ada@example.com", username="ada", password_hash="h", timestamp=T0)
    account.collect_events()
    account.grant_consent("app-1", ["openid", "email"], T0)
    account.revoke_consent("app-1", T0 + timedelta(minutes=1))
    granted, revoked = account.collect_events()
    bodies = [public_event(e, account.id) for e in (granted, revoked)]
    assert bodies[0] is not None and bodies[0].body(None) == {
        "type": "consent.granted",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "account_id": str(account.id),
            "client_id": "app-1",
            "scopes": ["email", "openid"],
        },
    }
    assert bodies[1] is not None and bodies[1].body(None)["data"] == {
        "account_id": str(account.id),
        "client_id": "app-1",
    }
