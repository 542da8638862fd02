"""Auditors' questions of the event store: an account as of an instant, its replay, the export,
against both stores. What they are shown never holds a secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pyotp
import pytest

from application.audit.history import History
from application.audit.trail_export import GENESIS
from application.views import AccountView, Client, TokenPair, json_ready
from domain.account import Account
from domain.errors import AccountNotFound, InvalidCredentials
from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD, mailed_token, verified
from tests.conftest import FakeClock, authenticated, refreshed

CLIENT = Client(ip="203.0.113.7", user_agent="pytest")
NEW_PASSWORD = "a brand new passphrase"


def grant(container: Container, account_id: UUID, role: str) -> None:
    # The admin use case comes with its own branch; the aggregate's command is the same fact.
    account = container.log.find(account_id, Account)
    assert account is not None
    account.grant_role(role, container.clock.now(), operator="cli:root")
    container.log.save(account)


def fail_logins(container: Container, times: int) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            container.login.log_in("ada", "not the password", CLIENT)


def signed_in(container: Container) -> TokenPair:
    tokens = container.login.log_in("ada", PASSWORD, CLIENT)
    assert isinstance(tokens, TokenPair)
    return tokens


def test_there_is_no_state_before_registration_nor_for_an_unknown_id(
    container: Container,
) -> None:
    view = container.registration.register("ada@example.com", "ada", PASSWORD)
    history = container.history
    with pytest.raises(AccountNotFound):
        history.state_as_of(view.id, view.created_at - timedelta(microseconds=1))
    with pytest.raises(AccountNotFound):
        history.state_as_of(uuid4(), view.created_at)
    assert history.state_as_of(view.id, view.created_at).version == 1


def test_a_session_or_a_claim_id_is_not_an_account(container: Container) -> None:
    verified(container)
    session_id = authenticated(container, signed_in(container).access_token).session_id
    for not_an_account in (session_id, uuid4()):
        with pytest.raises(AccountNotFound):
            container.history.state_as_of(not_an_account, container.clock.now())
        with pytest.raises(AccountNotFound):
            container.history.replay(not_an_account)
    with pytest.raises(AccountNotFound):
        container.history.account_id(str(session_id))
    with pytest.raises(AccountNotFound):
        container.history.account_id("nobody@example.com")


def test_the_state_after_each_event_shows_that_event_s_effect(
    container: Container, clock: FakeClock
) -> None:
    history = History(container.log, batch_size=2)  # the stream is read two events at a time
    view = container.registration.register("ada@example.com", "ada", PASSWORD)
    at: dict[str, datetime] = {"registered": clock.now()}
    clock.advance(minutes=1)
    container.registration.verify_email(mailed_token(container, "ada@example.com"))
    at["verified"] = clock.now()
    clock.advance(minutes=1)
    container.profile.update(view.id, "Ada Lovelace")
    at["profile"] = clock.now()
    clock.advance(minutes=1)
    fail_logins(container, 2)
    at["failed"] = clock.now()
    clock.advance(minutes=1)
    fail_logins(container, 3)  # the fifth in a row locks (15 minutes by default)
    at["locked"] = clock.now()
    clock.advance(minutes=1)
    grant(container, view.id, "auditor")
    at["role"] = clock.now()

    def state(moment: str) -> dict[str, Any]:
        return dict(json_ready(history.state_as_of(view.id, at[moment])))

    registered = state("registered")
    assert registered["email"] == "ada@example.com" and registered["username"] == "ada"
    assert (registered["email_verified"], registered["display_name"]) == (False, "")
    assert registered["as_of"] == at["registered"].isoformat()
    assert state("verified")["email_verified"] is True
    assert state("verified")["display_name"] == ""
    assert state("profile")["display_name"] == "Ada Lovelace"
    failed = state("failed")
    assert (failed["failed_logins"], failed["locked"]) == (2, False)
    locked = history.state_as_of(view.id, at["locked"])
    assert locked.locked and locked.failed_logins == 0
    assert locked.locked_until is not None
    assert locked.locked_until - at["locked"] > timedelta(minutes=14)
    assert locked.roles == ()
    granted = history.state_as_of(view.id, at["role"])
    assert granted.roles == ("auditor",) and granted.locked
    # The policy's lock lifts by time: as of later, with no event since, it reads as lifted.
    later = history.state_as_of(view.id, at["locked"] + timedelta(minutes=20))
    assert (later.locked, later.locked_until, later.roles) == (False, None, ("auditor",))
    assert later.version == granted.version
    versions = [history.state_as_of(view.id, at[m]).version for m in at]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert json.loads(json.dumps(json_ready(later)))["id"] == str(view.id)


def test_a_long_history_is_rebuilt_from_its_snapshot_at_any_instant(
    container: Container, clock: FakeClock
) -> None:
    view = container.registration.register("ada@example.com", "ada", PASSWORD)
    at: dict[int, datetime] = {}
    for n in range(1, 121):  # snapshots every 50 events: at versions 50 and 100
        container.profile.update(view.id, f"name {n}")
        at[n] = clock.now()
    history = History(container.log, batch_size=7)
    for n in (1, 47, 48, 49, 75, 98, 120):
        state = history.state_as_of(view.id, at[n])
        assert (state.display_name, state.version) == (f"name {n}", n + 2)
    assert len(list(history.replay(view.id))) == 122


def test_an_account_is_named_by_id_email_or_username_even_one_that_reads_as_a_uuid(
    container: Container,
) -> None:
    hex_name = "0123456789abcdef0123456789abcdef"
    view = container.registration.register("hex@example.com", hex_name, PASSWORD)
    history = container.history
    assert history.account_id(hex_name) == view.id
    assert history.account_id("HEX@example.com") == view.id
    assert history.account_id(str(view.id)) == view.id


def test_a_naive_instant_is_taken_as_utc(container: Container) -> None:
    view = container.registration.register("ada@example.com", "ada", PASSWORD)
    naive = view.created_at.replace(tzinfo=None)
    assert container.history.state_as_of(view.id, naive).version == 1


def everything(container: Container, clock: FakeClock) -> tuple[AccountView, list[str]]:
    """A flow that puts every kind of secret in the store; returns the clear ones it saw."""
    verified(container)
    container.registration.register("bob@example.com", "bob", PASSWORD)
    ada = container.log.account_for_login("ada")
    assert ada is not None
    tokens = signed_in(container)
    rotated = refreshed(container, tokens.refresh_token)
    claims = authenticated(container, rotated.access_token)
    enrollment = container.mfa.enroll(claims)
    codes = container.mfa.confirm(claims, pyotp.TOTP(enrollment.secret).at(clock.now()))
    container.passwords.change(claims, PASSWORD, NEW_PASSWORD, codes[0])  # MFA on: a code too
    container.passwords.forget("ada@example.com")
    container.profile.update(ada.id, "Ada Lovelace")
    fail_logins(container, 1)
    clear = [
        PASSWORD,
        NEW_PASSWORD,
        tokens.refresh_token,
        rotated.refresh_token,
        enrollment.secret,
        *codes,
    ]
    return AccountView.of(ada), clear


def stored_secrets(container: Container) -> set[str]:
    """Every hash, digest and sealed value the raw events hold."""
    found: set[str] = set()
    notifications = container.log.recorder.select_notifications(start=1, limit=10_000)
    for notification in notifications:
        event = container.log.mapper.to_domain_event(notification)
        for key, value in vars(event).items():
            if any(word in key for word in ("hash", "sealed", "secret")):
                values = value if isinstance(value, list) else [value]
                found |= {v for v in values if isinstance(v, str) and v}
    return found


def test_replay_is_the_account_stream_in_order_and_nothing_shown_holds_a_secret(
    container: Container, clock: FakeClock
) -> None:
    ada, clear = everything(container, clock)
    history = container.history
    replayed = list(history.replay(ada.id))
    stream = list(container.log.events.get(ada.id))
    assert [e.type for e in replayed] == [type(e).__name__ for e in stream]
    assert [e.version for e in replayed] == list(range(1, len(stream) + 1))
    assert [e.time for e in replayed] == sorted(e.time for e in replayed)
    assert {e.aggregate_id for e in replayed} == {ada.id}
    assert all(e.position is None for e in replayed)
    for kind in ("Registered", "EmailVerified", "MfaEnabled", "PasswordChanged", "LoginFailed"):
        assert kind in [e.type for e in replayed]

    secrets = stored_secrets(container)
    kinds = {s[:9] for s in secrets}
    assert "$argon2id" in kinds and len(secrets) >= 10  # password hashes, digests, sealed
    shown = "\n".join(
        [
            *(json.dumps(json_ready(e)) for e in replayed),
            *history.export(),
            json.dumps(json_ready(history.state_as_of(ada.id, clock.now()))),
        ]
    )
    leaked = [s for s in [*secrets, *clear] if s in shown]
    assert leaked == []


def test_the_export_is_every_account_and_session_event_in_store_order_and_verifies(
    container: Container, clock: FakeClock
) -> None:
    ada, _ = everything(container, clock)
    # A session cache of one: every other session's account is found by loading the session.
    history = History(container.log, batch_size=3, known_sessions=1)
    lines = list(history.export())
    entries = [json.loads(line) for line in lines]
    positions = [e["position"] for e in entries]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    notifications = container.log.recorder.select_notifications(start=1, limit=10_000)
    trail_topics = [
        n for n in notifications if n.topic.split(":")[1].startswith(("Account.", "Session."))
    ]
    assert len(entries) == len(trail_topics)
    sessions = [e for e in entries if e["aggregate"] == "Session"]
    assert {e["type"] for e in sessions} >= {"SessionStarted", "SessionRefreshed"}
    assert all(e["account_id"] == str(ada.id) for e in sessions)
    bob = container.log.account_for_login("bob")
    assert bob is not None
    assert {e["account_id"] for e in entries} == {str(ada.id), str(bob.id)}
    assert entries[0]["prev"] == GENESIS
    result = history.verify(lines)
    assert result.ok and result.lines == len(lines)


def test_the_export_streams_in_batches(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything(container, clock)
    reads: list[int] = []
    select = container.log.recorder.select_notifications

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs["limit"])
        return select(*args, **kwargs)

    monkeypatch.setattr(container.log.recorder, "select_notifications", counted)
    lines: Iterator[str] = History(container.log, batch_size=4).export()
    assert reads == []  # nothing is read before the first line is asked for
    next(lines)
    assert reads == [4]
    rest = list(lines)
    assert len(reads) > 3 and set(reads) == {4} and rest


def test_an_export_since_an_instant_starts_its_own_chain(
    container: Container, clock: FakeClock
) -> None:
    verified(container)
    clock.advance(hours=1)
    since = clock.now()
    signed_in(container)
    fail_logins(container, 1)
    lines = list(container.history.export(since=since))
    entries = [json.loads(line) for line in lines]
    assert [e["type"] for e in entries] == ["SessionStarted", "LoginFailed"]
    assert all(datetime.fromisoformat(e["time"]) >= since for e in entries)
    assert entries[0]["prev"] == GENESIS
    assert container.history.verify(lines).ok
