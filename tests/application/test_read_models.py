"""The read models against the events they are projected from, on both stores: rows, rebuilds,
crashes in the middle of a batch, and lag."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from application.read_side.queries import AuditFilter
from application.views import Client, TokenPair
from domain.session import Session
from infrastructure.projector import Projector
from infrastructure.rebuild import rebuild
from interfaces.container import Container, build
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock, authenticated, event_count, refreshed, run_projections

READ_MODELS = {"accounts": ("accounts",), "sessions": ("sessions",), "audit_log": ("audit_log",)}


def tables(container: Container) -> dict[str, list[dict[str, Any]]]:
    """Every row of every read model as it reads (its sealed values opened), in a stable
    order. (Sealing draws a fresh nonce each time: the stored bytes of two projections of the
    same events differ, what they read as does not.)"""
    found = {}
    for name, names in READ_MODELS.items():
        projection: Any = container.projector(name).projection
        for table in names:
            rows = projection.seals.opened(table, projection.view.rows(table, {}))
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
    rotated = refreshed(container, first.refresh_token)
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017  (the wrong password; any refusal)
            container.login.log_in("bob", "wrong password!", phone)
    container.administration.lock("bob", operator="cli:root")
    return {"ada": ada, "bob": bob, "first": rotated, "second": second}


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
    assert [a.username for a in container.read_side.accounts()] == ["ada", "bob"]  # registered


def test_an_account_is_found_by_its_exact_email_or_username_in_any_case_and_by_no_part(
    container: Container, lived: dict[str, Any]
) -> None:
    """As Keycloak's exact search: the rows keep email and username as keyed fingerprints."""
    run_projections(container)
    found = container.read_side.accounts
    assert [a.username for a in found("BOB")] == ["bob"]
    assert [a.username for a in found(" Bob@Example.COM ")] == ["bob"]
    assert [a.username for a in found("ada@example.com")] == ["ada"]
    for part in ("bo", "b", "ob", "bob@", "@example.com", "example", "bob@example", "%", "_"):
        assert found(part) == [], part
    assert found("ada@example.com\x00") == []  # no account can have it: no match, no error


def test_a_full_page_of_accounts_says_where_the_next_begins(
    container: Container, lived: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from application.read_side import queries

    run_projections(container)
    # The largest page allowed is the case at stake: made 1 here, so two accounts are a page and
    # one more. (The extra row that says "more" was once cut off at the largest page.)
    monkeypatch.setattr(queries, "MAX_PAGE", 1)
    first = container.read_side.account_list(limit=queries.MAX_PAGE)
    assert [a.username for a in first.accounts] == ["ada"] and first.next_after
    last = container.read_side.account_list(after=first.next_after, limit=queries.MAX_PAGE)
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
    container.sessions.end(claims, phone.id)
    run_projections(container)
    assert [s.user_agent for s in container.read_side.live_sessions(ada)] == ["Laptop"]

    container.sessions.log_out(claims, None, all_sessions=True)
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


def queried(container: Container, account_id: Any) -> list[Any]:
    """The audit queries each of audit_log's secondary indexes serves."""
    read = container.read_side
    everything = read.audit_events(AuditFilter(limit=500)).entries
    return [
        everything,
        read.audit_events(AuditFilter(type="LoginFailed")).entries,
        read.activity(account_id, cursor=None, limit=500).entries,
        read.audit_events(AuditFilter(since=everything[len(everything) // 2].time)).entries,
    ]


@pytest.mark.parametrize("name", sorted(READ_MODELS))
def test_a_rebuild_leaves_the_rows_and_indexes_of_a_fresh_projection(
    container: Container, lived: dict[str, Any], name: str
) -> None:
    """The rebuild drops the secondary indexes for its replay and creates them at its end."""
    run_projections(container)
    rows, view = tables(container), container.projector(name).projection.view
    indexes = view.index_definitions()  # type: ignore[attr-defined]
    dropped: list[dict[str, str]] = []

    def replaying(events: Any, tracking: Any) -> None:
        dropped.append(view.index_definitions())  # type: ignore[attr-defined]
        real_process(events, tracking)

    projection: Any = container.projector(name).projection
    real_process = projection.process_events
    projection.process_events = replaying
    try:
        rebuilt = rebuild(container.log, container.projector(name), batch_size=7)
        assert rebuilt.events == rebuilt.recorded == event_count(container)
    finally:
        del projection.process_events
    assert len(indexes) > len(dropped[0])  # the replay ran without the secondary indexes
    assert all(found == dropped[0] for found in dropped)
    assert tables(container) == rows
    assert view.index_definitions() == indexes  # type: ignore[attr-defined]


def test_a_rebuild_killed_without_its_indexes_gets_them_back_at_the_next_start_or_rebuild(
    container: Container, lived: dict[str, Any], settings: Any, clock: FakeClock
) -> None:
    run_projections(container)
    projector = container.projector("audit_log")
    projection: Any = projector.projection
    view = projection.view
    rows, indexes = tables(container)["audit_log"], view.index_definitions()
    answers = queried(container, lived["bob"].id)
    assert all(answers)

    class Killed(BaseException):
        """Stands for the rebuild's process dying after its first batch."""

    real_process = projection.process_events
    batches = 0

    def dying(events: Any, tracking: Any) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise Killed
        real_process(events, tracking)

    for restore in ("start", "rebuild"):
        batches = 0
        projection.process_events = dying
        try:
            with pytest.raises(Killed):
                rebuild(container.log, projector, batch_size=5)
        finally:
            del projection.process_events
        assert 0 < len(tables(container)["audit_log"]) < len(rows)
        left = view.index_definitions()
        assert len(left) < len(indexes)
        if restore == "start":
            build(settings, clock=clock).close()  # the store's start creates what is missing
            assert view.index_definitions() == indexes
            projector.catch_up()  # the live projector resumes after the last whole batch
        else:
            rebuilt = rebuild(container.log, projector)
            assert rebuilt.events == rebuilt.recorded == event_count(container)
        assert view.index_definitions() == indexes, restore
        assert tables(container)["audit_log"] == rows, restore
        assert queried(container, lived["bob"].id) == answers, restore


def test_a_rebuild_appends_audit_rows_and_fails_on_one_written_twice(
    container: Container, lived: dict[str, Any]
) -> None:
    """Within appending() (a rebuild's), audit rows are appended, not upserted: a row the
    projection wrote twice would be an error, not a silent overwrite."""
    run_projections(container)
    view: Any = container.projector("audit_log").projection.view
    row = view.rows("audit_log", {})[0]
    head = event_count(container)
    with view.appending(), pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        view.write({"audit_log": [row]}, Tracking(container.log.name, head + 1))
    view.write({"audit_log": [row]}, Tracking(container.log.name, head + 1))  # upserted
    assert view.rows("audit_log", {"position": row["position"]}) == [row]


@pytest.mark.parametrize("name", sorted(READ_MODELS))
def test_batches_of_any_size_yield_the_rows_of_one_event_at_a_time(
    container: Container, lived: dict[str, Any], clock: FakeClock, name: str
) -> None:
    """Batches fold many events in memory (an event sees the ones before it in its batch: an
    AllSessionsRevoked the sessions started just before it); the rows are those of one event a
    transaction."""
    tablet = container.login.log_in("ada", PASSWORD, Client("192.0.2.9", "Tablet"))
    assert isinstance(tablet, TokenPair)
    claims = authenticated(container, tablet.access_token)
    container.passwords.change(claims, PASSWORD, PASSWORD + " anew")  # keeps the tablet's
    container.login.log_in("ada", PASSWORD + " anew", Client("192.0.2.9", "Phone"))
    container.sessions.log_out(claims, None, all_sessions=True)
    projection = container.projector(name).projection
    found = []
    for size in (1, 3, 500):
        projection.view.reset(container.log.name)  # type: ignore[attr-defined]
        Projector(container.log, projection, container.projector(name).lease, size).catch_up()
        found.append(tables(container)[READ_MODELS[name][0]])
    assert found[0] == found[1] == found[2]
    assert found[0]


def test_a_projection_killed_in_the_middle_of_a_batch_resumes_without_loss_or_double(
    container: Container, lived: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill comes inside the batch's transaction, after its rows were written and before
    its tracking record: none of the batch may remain, and the restart applies it whole."""

    class Killed(BaseException):
        """Stands for the process dying in the middle of a batch."""

    wanted_positions = {}
    for name in READ_MODELS:
        topics = set(container.projector(name).projection.topics)
        wanted_positions[name] = [
            n.id
            for n in container.log.recorder.select_notifications(start=1, limit=10_000)
            if n.topic in topics
        ]
    for name in READ_MODELS:
        original = container.projector(name)
        projection: Any = original.projection
        store: Any = projection.view
        projector = Projector(container.log, projection, original.lease, batch_size=2)
        committed: list[int] = []
        batches = kills = 0
        real_tracking, real_process = store._insert_tracking, projection.process_events

        def dying_tracking(cursor: Any, tracking: Any, real: Any = real_tracking) -> None:
            nonlocal batches, kills
            batches += 1
            if batches % 3 == 0:
                kills += 1
                raise Killed
            real(cursor, tracking)

        def recording(
            events: Any, tracking: Any, real: Any = real_process, seen: Any = committed
        ) -> None:
            real(events, tracking)  # a Killed batch is not recorded
            seen.extend(position for _, position in events)

        monkeypatch.setattr(store, "_insert_tracking", dying_tracking)
        monkeypatch.setattr(projection, "process_events", recording)
        for _ in range(100):
            try:
                projector.catch_up()
                break
            except Killed:
                continue
        monkeypatch.undo()
        assert kills >= 2, name
        # Every event the projection wants applied in a committed batch, once, in order.
        assert committed == wanted_positions[name], name
    resumed = tables(container)
    for name in READ_MODELS:
        container.projector(name).projection.view.reset(container.log.name)  # type: ignore[attr-defined]
    run_projections(container)
    assert resumed == tables(container)
    assert len(resumed["audit_log"]) == len(wanted_positions["audit_log"])


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


def test_each_folded_account_row_equals_the_aggregate_at_that_version(
    container: Container, clock: FakeClock
) -> None:
    """The accounts rows are folded from the events alone; after every event of a long life
    (every Account event there is) the row is what account_row makes of the aggregate."""
    from datetime import timedelta
    from uuid import uuid4

    from application.read_side.read_models import AccountsProjection, account_row
    from domain.account import Account
    from domain.lockout import LockoutPolicy

    policy = LockoutPolicy(threshold=3)
    account = Account(
        email="eve@example.com", username="eve", password_hash="h0", timestamp=clock.now()
    )
    steps = [
        lambda at: account.request_email_verification("t", "sealed", at, timedelta(hours=1)),
        lambda at: account.verify_email("t", at),
        lambda at: account.update_profile("Eve", at),
        *[lambda at: account.fail_login(at, policy) for _ in range(3)],  # the third locks
        lambda at: account.unlock(at, reason="operator", operator="cli:root"),
        lambda at: account.grant_role("auditor", at, "cli:root"),
        lambda at: account.grant_role("admin", at, "cli:root"),
        lambda at: account.revoke_role("auditor", at, "cli:root"),
        lambda at: account.start_mfa_enrollment("sealed secret", at),
        lambda at: account.enable_mfa(1, ["r1", "r2"], at),
        lambda at: account.reseal_mfa_secret("sealed secret, again", None, at),
        lambda at: account.use_totp(2, at),
        lambda at: account.use_recovery_code("r1", at),
        lambda at: account.renew_recovery_codes(["r3", "r4"], at),
        lambda at: account.lock(at, operator="cli:root", until=at + timedelta(hours=2)),
        lambda at: account.unlock(at, reason="operator", operator="cli:root"),
        lambda at: account.lock(at, operator="cli:root"),
        lambda at: account.disable(at, operator="cli:root"),
        lambda at: account.enable(at, operator="cli:root"),
        lambda at: account.disable_mfa(at),
        lambda at: account.fail_login(at, policy, factor="totp"),
        lambda at: account.succeed_login(at),
        lambda at: account.change_password("h1", at, history_size=3),
        lambda at: account.rehash_password("h1b", at),
        lambda at: account.request_password_reset("r", "sealed", at, timedelta(hours=1)),
        lambda at: account.reset_password("r", "h2", at, history_size=3),
        lambda at: account.update_profile("Eve Adams", at),
        lambda at: account.claims_rekeyed(2, at),  # the row's fingerprints made anew
        lambda at: account.revoke_all_sessions(at),
        lambda at: account.register_passkey("c1", "pk", 1, "Phone", ["internal"], at),
        lambda at: account.rename_passkey("c1", "Laptop", at),
        lambda at: account.use_passkey("c1", 2, at, policy),
        lambda at: account.use_passkey("c1", 2, at, policy),  # went back: a clone
        lambda at: account.remove_passkey("c1", at),
        lambda at: account.link_identity("i1", "corp", "subject-1", "eve@corp.example", at),
        lambda at: account.use_identity("i1", at),
        lambda at: account.unlink_identity("i1", at),
        lambda at: account.grant_consent("client-1", ["openid", "email"], at),
        # no command records it any longer; streams written before still hold it
        lambda at: account._app_session_started(
            client_id="client-1",
            session_id=uuid4(),
            forget_before=at - timedelta(days=90),
            timestamp=at,
        ),
        lambda at: account.revoke_consent("client-1", at),
        lambda at: account.erase(at, operator="cli:root"),
    ]
    container.log.save(account)
    for step in steps:
        clock.advance(seconds=7)
        step(clock.now())
        container.log.save(account)
    recorded = {type(e).__name__ for e in container.log.events.get(account.id)}
    made = {topic.rsplit(".", 1)[1] for topic in AccountsProjection.topics} - {"SessionStarted"}
    assert recorded == made, "every Account event is tried"

    projector = container.projector("accounts")
    store: Any = projector.projection.view
    single = Projector(container.log, projector.projection, projector.lease, batch_size=1)
    checked = 0
    while single.run_once():
        rows = store.rows("accounts", {"id": str(account.id)})
        if not rows:  # the erasure, the last event, deletes the row
            assert checked == account.version - 1
            break
        (row,) = projector.projection.seals.opened("accounts", rows)  # type: ignore[attr-defined]
        row.pop("last_login_at")
        aggregate: Any = container.log.repository.get(account.id, version=row["version"])
        assert row == account_row(aggregate), f"after {row['version']} events"
        checked += 1
    assert checked == account.version - 1 and not store.rows("accounts", {"id": str(account.id)})


def test_the_trail_read_field_by_field_equals_the_trail_of_whole_events(
    container: Container, lived: dict[str, Any]
) -> None:
    """The export parses only the fields the trail shows; its entries are those made from the
    fully decoded events."""
    from application.audit.trail import is_trail_event, trail_entry

    owners: dict[Any, Any] = {}
    expected = []
    for notification in container.log.recorder.select_notifications(start=1, limit=10_000):
        event: Any = container.log.mapper.to_domain_event(notification)
        if isinstance(event, Session.SessionStarted):
            owners[event.originator_id] = event.account_id
        if is_trail_event(event):
            owner = owners.get(event.originator_id)
            expected.append(trail_entry(event, notification.id, owner))
    found = list(container.history.trail())
    assert found == expected
    assert {e.type for e in found} >= {"SessionStarted", "SessionRefreshed", "AccountLocked"}
    assert any(e.details for e in found) and all(e.time.tzinfo for e in found)


# The accounts table as releases before sealing kept it: the person's values in plain text.
PLAIN_ACCOUNTS = (
    "id TEXT PRIMARY KEY, email TEXT NOT NULL, username TEXT NOT NULL, display_name TEXT NOT"
    " NULL, email_verified INTEGER NOT NULL, roles TEXT NOT NULL, disabled INTEGER NOT NULL,"
    " locked INTEGER NOT NULL, locked_until DOUBLE PRECISION, mfa_enabled INTEGER NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
    " last_login_at DOUBLE PRECISION, version INTEGER NOT NULL"
)


def test_a_read_model_of_an_older_shape_is_dropped_and_rebuilt_from_the_log(
    container: Container, settings: Any, clock: FakeClock
) -> None:
    """A store written by an earlier release (plain columns) is not left as it was: the next
    start drops the read model with its position, and its projector rebuilds it from the log,
    the values sealed; on SQLite its file keeps no page of the old table."""
    ada = container.registration.register("ada@example.com", "ada", PASSWORD)
    run_projections(container)
    view: Any = container.projector("accounts").projection.view
    table = view._table("accounts")
    with view.datastore.transaction(commit=True) as c:
        c.execute(f"DROP TABLE {table}")
        c.execute(f"CREATE TABLE {table} ({PLAIN_ACCOUNTS})")
        c.execute(
            f"INSERT INTO {table} VALUES ({', '.join([view.marker] * 14)})",  # noqa: S608
            [str(ada.id), "ada@example.com", "ada", "Ada", 0, "", 0, 0, None, 0, 1.0, 1.0, None, 1],
        )
    assert container.projector("accounts").position == event_count(container)
    container.close()

    started = build(settings, clock=clock)
    try:
        projector = started.projector("accounts")
        assert projector.position == 0  # the position went with the old rows
        assert projector.projection.view.rows("accounts", {}) == []
        run_projections(started)
        (row,) = projector.projection.view.rows("accounts", {})
        assert "email" not in row and row["sealed_email"] and "ada" not in row["sealed_email"]
        assert [a.email for a in started.read_side.accounts("ADA")] == ["ada@example.com"]
        if not started.database.is_postgres:
            files = started.settings.data_path.glob("accounts.sqlite*")
            assert not [f for f in files if b"ada@example.com" in f.read_bytes()]
    finally:
        started.close()


def test_a_page_opens_its_peoples_values_with_one_read_of_the_key_table(
    container: Container, lived: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each listing reads the keys of all the people on its page at once, not one by one."""
    run_projections(container)
    keys: Any = container.log.keys
    table = keys._table
    reads: list[str] = []
    for name in ("get", "get_many"):
        real = getattr(table, name)
        monkeypatch.setattr(
            table, name, lambda *args, real=real, name=name: reads.append(name) or real(*args)
        )
    for answer in (
        lambda: container.read_side.accounts(),
        lambda: container.read_side.live_sessions(lived["ada"].id),
        lambda: container.read_side.audit_events(AuditFilter(limit=500)).entries,
    ):
        keys._cache.clear()  # as a process that has read none of them yet
        reads.clear()
        assert answer()
        assert reads == ["get_many"], reads
