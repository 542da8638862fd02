"""The read models against the events they are projected from, on both stores: rows, rebuilds,
crashes in the middle of a batch, and lag."""

from __future__ import annotations

from typing import Any

import pytest

from application.queries import AuditFilter
from application.views import Client, TokenPair
from domain.session import Session
from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock, authenticated, event_count, run_projections

READ_MODELS = {"accounts": ("accounts",), "sessions": ("sessions",), "audit_log": ("audit_log",)}


def tables(container: Container) -> dict[str, list[dict[str, Any]]]:
    """Every row of every read model, in a stable order."""
    found = {}
    for name, names in READ_MODELS.items():
        store: Any = container.projector(name).projection.view
        for table in names:
            rows = store.rows(table, {})
            found[table] = sorted(rows, key=lambda row: str(row.get("position", row.get("id"))))
    return found


def history(container: Container, clock: FakeClock) -> dict[str, Any]:
    """A life with something of everything: two devices, a refresh, failures, a lock, roles."""
    ada = container.registration.register("ada@example.com", "ada", PASSWORD)
    bob = container.registration.register("bob@example.com", "bob", PASSWORD)
    phone = Client(ip="203.0.113.7", user_agent="Phone")
    laptop = Client(ip="198.51.100.2", user_agent="Laptop")
    container.administration.grant_role("ada", "auditor", operator="cli:root")
    first = container.login.log_in("ada", PASSWORD, phone)
    clock.advance(minutes=1)
    second = container.login.log_in("ada", PASSWORD, laptop)
    assert isinstance(first, TokenPair) and isinstance(second, TokenPair)
    refreshed = container.login.refresh(first.refresh_token)
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017  (the wrong password; any refusal)
            container.login.log_in("bob", "wrong password!", phone)
    container.administration.lock("bob", operator="cli:root")
    return {"ada": ada, "bob": bob, "first": refreshed, "second": second}


@pytest.fixture
def lived(container: Container, clock: FakeClock) -> dict[str, Any]:
    return history(container, clock)


@pytest.fixture
def settings(settings: Any) -> Any:
    """These tests log in without verifying, which the default refuses."""
    import msgspec

    return msgspec.structs.replace(settings, require_verified_email=False)


def test_the_accounts_read_model_shows_each_account_as_its_events_left_it(
    container: Container, lived: dict[str, Any]
) -> None:
    run_projections(container)
    accounts = {a.username: a for a in container.read_side.accounts()}
    assert set(accounts) == {"ada", "bob"}
    assert accounts["ada"].roles == ["auditor"]
    assert accounts["ada"].last_login_at is not None
    assert not accounts["ada"].locked
    assert accounts["bob"].locked and accounts["bob"].locked_until is None
    assert accounts["bob"].last_login_at is None
    assert [a.username for a in container.read_side.accounts("BO")] == ["bob"]
    assert container.read_side.accounts("%") == []  # a wildcard is searched for, not obeyed
    assert [a.username for a in container.read_side.accounts(after="ada")] == ["bob"]


def test_a_full_page_of_accounts_says_where_the_next_begins(
    container: Container, lived: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from application import queries

    run_projections(container)
    # The largest page allowed is the case at stake: made 1 here, so two accounts are a page and
    # one more. (The extra row that says "more" was once cut off at the largest page.)
    monkeypatch.setattr(queries, "MAX_PAGE", 1)
    first = container.read_side.account_list(limit=queries.MAX_PAGE)
    assert ([a.username for a in first.accounts], first.next_after) == (["ada"], "ada")
    last = container.read_side.account_list(after="ada", limit=queries.MAX_PAGE)
    assert ([a.username for a in last.accounts], last.next_after) == (["bob"], None)


def test_the_sessions_read_model_lists_live_sessions_and_follows_revocations(
    container: Container, lived: dict[str, Any], clock: FakeClock
) -> None:
    run_projections(container)
    ada = lived["ada"].id
    sessions = container.read_side.live_sessions(ada)
    assert [s.user_agent for s in sessions] == ["Laptop", "Phone"]  # newest first
    phone = sessions[1]
    assert phone.last_used_at > phone.started_at  # the refresh used it
    assert phone.ip == "203.0.113.7"

    claims = authenticated(container, lived["second"].access_token)
    container.login.end_session(claims, phone.id)
    run_projections(container)
    assert [s.user_agent for s in container.read_side.live_sessions(ada)] == ["Laptop"]

    container.login.log_out(claims, None, all_sessions=True)
    run_projections(container)
    assert container.read_side.live_sessions(ada) == []


def test_expired_sessions_are_not_listed(
    container: Container, lived: dict[str, Any], clock: FakeClock
) -> None:
    run_projections(container)
    clock.advance(seconds=container.settings.refresh_token_ttl + 1)
    assert container.read_side.live_sessions(lived["ada"].id) == []


def test_the_audit_log_has_one_entry_per_event_in_store_order_without_secrets(
    container: Container, lived: dict[str, Any]
) -> None:
    run_projections(container)
    page = container.read_side.audit_events(AuditFilter(limit=500))
    assert page.next_cursor is None
    positions = [e.position for e in page.entries]
    assert positions == sorted(positions)
    types = [e.type for e in page.entries if e.account_id == lived["bob"].id]
    assert types == ["Registered", "EmailVerificationRequested", "LoginFailed", "LoginFailed",
                     "AccountLocked"]  # fmt: skip
    lock = next(e for e in page.entries if e.type == "AccountLocked")
    assert lock.details["operator"] == "cli:root"
    failure = next(e for e in page.entries if e.type == "LoginFailed")
    assert (failure.outcome, failure.ip, failure.user_agent) == ("failure", "", "")
    refreshed = next(e for e in page.entries if e.type == "SessionRefreshed")
    assert refreshed.account_id == lived["ada"].id  # a Session event, traced to its account
    assert refreshed.session_id is not None

    account = container.log.account_for_login("ada")
    assert account is not None
    secrets = [account.password_hash, account.verification_token_hash or "-"]
    session = container.log.find(refreshed.session_id, Session)
    assert session is not None
    secrets += [session.refresh_token_hash, *session.spent_token_hashes]
    dumped = repr(tables(container)["audit_log"])
    assert not [secret for secret in secrets if secret in dumped]
    assert "sealed" not in dumped and "hash" not in dumped


def test_audit_filters_and_cursor_pagination(container: Container, lived: dict[str, Any]) -> None:
    run_projections(container)
    everything = container.read_side.audit_events(AuditFilter(limit=500)).entries
    seen, cursor = [], None
    while True:
        page = container.read_side.audit_events(AuditFilter(cursor=cursor, limit=3))
        seen += page.entries
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == everything
    failures = container.read_side.audit_events(AuditFilter(type="LoginFailed"))
    assert [e.type for e in failures.entries] == ["LoginFailed", "LoginFailed"]
    bob = container.read_side.audit_events(AuditFilter(account_id=lived["bob"].id))
    assert {e.account_id for e in bob.entries} == {lived["bob"].id}
    middle = everything[len(everything) // 2].time
    before = container.read_side.audit_events(AuditFilter(until=middle)).entries
    after = container.read_side.audit_events(AuditFilter(since=middle)).entries
    assert before + after == everything
    activity = container.read_side.activity(lived["bob"].id, cursor=None, limit=2)
    assert [e.type for e in activity.entries] == ["AccountLocked", "LoginFailed"]  # newest first
    rest = container.read_side.activity(lived["bob"].id, cursor=activity.next_cursor, limit=10)
    assert [e.type for e in rest.entries] == [
        "LoginFailed",
        "EmailVerificationRequested",
        "Registered",
    ]


@pytest.mark.parametrize("name", sorted(READ_MODELS))
def test_a_rebuild_from_the_first_event_yields_the_same_rows(
    container: Container, lived: dict[str, Any], name: str
) -> None:
    run_projections(container)
    before = tables(container)
    projector = container.projector(name)
    projector.projection.view.reset(container.log.name)  # type: ignore[attr-defined]
    assert all(
        rows == [] for table, rows in tables(container).items() if table in READ_MODELS[name]
    )
    assert projector.position == 0
    projector.catch_up()
    assert tables(container) == before


def test_a_projection_killed_in_the_middle_of_a_batch_resumes_without_loss_or_double(
    container: Container, lived: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Killed(BaseException):
        """Stands for the process dying in the middle of applying an event."""

    for name in READ_MODELS:
        projector = container.projector(name)
        store: Any = projector.projection.view
        applied = 0
        real_apply = store.apply

        def dying_apply(changes: Any, tracking: Any, real: Any = real_apply) -> None:
            nonlocal applied
            applied += 1
            if applied % 4 == 0:
                raise Killed
            real(changes, tracking)

        monkeypatch.setattr(store, "apply", dying_apply)
        for _ in range(100):
            try:
                projector.catch_up()
                break
            except Killed:
                continue
        monkeypatch.undo()
    resumed = tables(container)
    for name in READ_MODELS:
        container.projector(name).projection.view.reset(container.log.name)  # type: ignore[attr-defined]
    run_projections(container)
    assert resumed == tables(container)
    assert len(resumed["audit_log"]) == len(
        container.read_side.audit_events(AuditFilter(limit=500)).entries
    )


def test_lag_counts_unread_events_and_the_age_of_the_oldest(
    container: Container, clock: FakeClock
) -> None:
    run_projections(container)
    assert {lag.events for lag in container.projection_lag().values()} == {0}
    container.registration.register("ada@example.com", "ada", PASSWORD)
    recorded = event_count(container)
    clock.advance(seconds=45)
    lags = container.projection_lag()
    assert lags["audit_log"].events == recorded
    assert 45 <= lags["audit_log"].seconds < 46
    assert container.readiness()["projections"] == "lagging"  # over the 30 s default
    run_projections(container)
    # Caught up, the mail outbox included, though most events are of no interest to it.
    assert {(lag.events, lag.seconds) for lag in container.projection_lag().values()} == {(0, 0.0)}
    assert container.readiness()["projections"] == "ok"


def test_lag_is_exported_per_projection(container: Container, clock: FakeClock) -> None:
    from prometheus_client import REGISTRY

    container.registration.register("ada@example.com", "ada", PASSWORD)
    clock.advance(seconds=5)
    container.projection_lag()
    for name in ("accounts", "sessions", "audit_log", "mail_outbox"):
        events = REGISTRY.get_sample_value("tessera_projection_lag_events", {"projection": name})
        seconds = REGISTRY.get_sample_value("tessera_projection_lag_seconds", {"projection": name})
        assert events == event_count(container), name
        assert seconds is not None and seconds >= 5, name
