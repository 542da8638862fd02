"""The revocation list forgets what decides nothing any more: its tables (the embedded default,
PostgreSQL without Redis) are purged by the lease holder's background pass, and every Redis
key carries its TTL. The stores write `until` by the system's clock, so each pass here is
given its instant (`now`) rather than waiting for it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
import redis
from psycopg_pool import ConnectionPool

from application.ports import AccessClaims
from infrastructure.expired_state import ExpiredState
from infrastructure.lease import FileLease, PostgresLease
from infrastructure.one_time_values import RedisOneTimeValues
from infrastructure.projector import Lease
from infrastructure.revocation import (
    CHANGING_TTL,
    EXPIRY_GRACE,
    MARK_TTL,
    PostgresRevocationList,
    RedisRevocationList,
    SqliteRevocationList,
)
from interfaces.container import build
from interfaces.settings import load_settings
from tests.conftest import FAST_ARGON2, FakeClock
from tests.servers import PostgresCluster

TTL = timedelta(minutes=15)  # ACCESS_TOKEN_TTL's default: how long a revocation must last
# A row written with this ttl is already past its `until` and its grace: the next pass takes it.
GONE = -(EXPIRY_GRACE + timedelta(seconds=1))
TABLES = (
    "revoked_sessions",
    "revoked_accounts",
    "revoked_apps",
    "account_marks",
    "written_positions",
)


@dataclass
class Tables:
    """A revocation list in tables, a way to count its rows, and leases as processes take."""

    store: Any
    count: Callable[[str], int]
    lease: Callable[[], Lease]


@pytest.fixture(params=["sqlite", "postgres"])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tables]:
    if request.param == "sqlite":
        path = tmp_path / "revocations.sqlite"
        store: Any = SqliteRevocationList(path)

        def count(table: str) -> int:
            with sqlite3.connect(path) as db:
                return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

        def lease() -> Lease:
            return FileLease(tmp_path / "expired-state.lease")

    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.new_database()
        store = PostgresRevocationList(ConnectionPool(url, open=True))

        def count(table: str) -> int:
            with psycopg.connect(url) as conn:
                row = conn.execute(f"SELECT count(*) FROM tessera_{table}").fetchone()  # noqa: S608
                assert row is not None
                return int(row[0])

        def lease() -> Lease:
            return PostgresLease(url, "expired-state")

    yield Tables(store, count, lease)
    store.close()


def claims(account: Any = None, session: Any = None, issued: float | None = None) -> AccessClaims:
    return AccessClaims(account or uuid4(), session or uuid4(), (), issued or time.time() - 1)


def running(name: str) -> bool:
    return name in {thread.name for thread in threading.enumerate()}


def revoked(store: Any, of: AccessClaims) -> bool:
    return bool(asyncio.run(store.standing(of)).revoked)


def fill(store: Any, ttl: timedelta) -> tuple[AccessClaims, AccessClaims]:
    """One row of every table, each written to last `ttl` (marks: MARK_TTL); returns a token's
    claims of the revoked session and of an app cut off."""
    session = claims()
    store.revoke_session(session.session_id, ttl)
    account = uuid4()
    store.revoke_sessions_before(account, datetime.now(UTC), ttl)
    app = AccessClaims(uuid4(), uuid4(), (), time.time() - 1, client_id="app")
    store.revoke_app_sessions_before(app.account_id, "app", datetime.now(UTC), ttl)
    token = store.changing([account])
    store.changed(token, {account: 3}, {account: 7})
    return session, app


def test_rows_past_their_time_are_gone_after_a_pass_and_later_ones_stay(tables: Tables) -> None:
    store = tables.store
    short_session, short_app = fill(store, TTL)
    long_session, long_app = fill(store, MARK_TTL * 2)
    assert all(tables.count(table) >= 1 for table in TABLES)

    # Past the revocations' time, before the marks' and the long revocations'.
    forgotten = store.forget_expired(
        datetime.now(UTC) + TTL + EXPIRY_GRACE + timedelta(seconds=5), 1000
    )

    assert forgotten == dict.fromkeys(TABLES[:3], 1) | dict.fromkeys(TABLES[3:], 0)
    assert [tables.count(t) for t in TABLES] == [1, 1, 1, 2, 2]
    assert not revoked(store, short_session)  # its row is gone (it no longer matters)
    assert not revoked(store, short_app)
    assert revoked(store, long_session)
    assert revoked(store, long_app)

    # Past the marks' and the written positions' time too.
    store.forget_expired(datetime.now(UTC) + MARK_TTL + EXPIRY_GRACE + timedelta(seconds=5), 1000)
    assert [tables.count(t) for t in TABLES] == [1, 1, 1, 0, 0]
    assert revoked(store, long_session)


def test_a_revoked_session_stays_revoked_while_its_tokens_may_still_be_alive(
    tables: Tables,
) -> None:
    store = tables.store
    session, app = fill(store, TTL)
    cut_off = claims(account=uuid4())
    store.revoke_sessions_before(cut_off.account_id, datetime.now(UTC), TTL)

    # The last token issued before the revocation expires at most TTL after it: a second
    # before that, every entry must still refuse it.
    store.forget_expired(datetime.now(UTC) + TTL - timedelta(seconds=1), 1000)

    assert revoked(store, session)
    assert revoked(store, app)
    assert revoked(store, cut_off)
    assert [tables.count(t) for t in TABLES[:3]] == [1, 2, 1]


def test_a_revocation_outlives_its_time_by_the_grace_that_clock_skew_and_races_need(
    tables: Tables,
) -> None:
    """A token a peer minted up to 30 s "in the future", or a refresh that raced the revocation,
    outlives `until` a little: the row stays for EXPIRY_GRACE (at least a minute) after it."""
    store = tables.store
    assert timedelta(minutes=1) <= EXPIRY_GRACE
    session, app = fill(store, TTL)
    cut_off = claims(account=uuid4())
    store.revoke_sessions_before(cut_off.account_id, datetime.now(UTC), TTL)

    store.forget_expired(datetime.now(UTC) + TTL + timedelta(seconds=5), 1000)
    assert [tables.count(t) for t in TABLES[:3]] == [1, 2, 1]
    assert revoked(store, session)
    assert revoked(store, app)
    assert revoked(store, cut_off)

    store.forget_expired(datetime.now(UTC) + TTL + EXPIRY_GRACE + timedelta(seconds=1), 1000)
    assert [tables.count(t) for t in TABLES[:3]] == [0, 0, 0]


def test_a_pass_deletes_at_most_its_batch_of_each_table(tables: Tables) -> None:
    store = tables.store
    for _ in range(5):
        store.revoke_session(uuid4(), timedelta(milliseconds=1))
    later = datetime.now(UTC) + EXPIRY_GRACE + timedelta(seconds=1)

    assert store.forget_expired(later, 2)["revoked_sessions"] == 2
    assert tables.count("revoked_sessions") == 3
    assert store.forget_expired(later, 2)["revoked_sessions"] == 2
    assert store.forget_expired(later, 2, {"revoked_sessions"}) == {"revoked_sessions": 1}
    assert tables.count("revoked_sessions") == 0


def test_the_lease_holder_purges_and_passes_again_soon_while_a_backlog_remains(
    tables: Tables,
) -> None:
    store = tables.store
    for _ in range(3):
        store.revoke_session(uuid4(), timedelta(milliseconds=1))
    later = datetime.now(UTC) + EXPIRY_GRACE + timedelta(seconds=1)
    holder = ExpiredState([store], tables.lease(), now=lambda: later, batch=2)
    standby = ExpiredState([store], tables.lease(), now=lambda: later, batch=2)
    try:
        assert holder.forget_some() is True  # a full batch: there may be more
        assert holder.next_pass_after(True) < timedelta(seconds=5)
        assert standby.forget_some() is False  # another process holds the lease
        assert tables.count("revoked_sessions") == 1
        assert holder.forget_some() is False
        assert holder.next_pass_after(False) == timedelta(minutes=10)
        assert tables.count("revoked_sessions") == 0
    finally:
        holder.release()
        standby.release()


def test_a_pass_after_a_backlog_goes_back_only_to_the_tables_that_had_one(
    tables: Tables,
) -> None:
    """A pass a second after a full batch reads only the tables that had one: a backlog of
    logouts does not have every pass read the marks and positions (unindexed) whole."""
    store = tables.store
    for _ in range(3):
        store.revoke_session(uuid4(), timedelta(milliseconds=1))
    later = datetime.now(UTC) + CHANGING_TTL + EXPIRY_GRACE + timedelta(seconds=1)
    holder = ExpiredState([store], tables.lease(), now=lambda: later, batch=2)
    try:
        assert holder.forget_some() is True  # revoked_sessions had a full batch
        store.changing([uuid4()])  # a mark expired by `later`, in a table with no backlog

        assert holder.forget_some() is False  # the rest of the backlog
        assert tables.count("revoked_sessions") == 0
        assert tables.count("account_marks") == 1  # not read by the backlog's pass

        assert holder.forget_some() is False  # the next ordinary pass reads every table
        assert tables.count("account_marks") == 0
    finally:
        holder.release()


def test_a_session_revoked_again_is_not_lost_to_a_pass(tables: Tables) -> None:
    """A session whose old entry expired and which is revoked once more keeps its new entry."""
    store = tables.store
    again = claims()
    store.revoke_session(again.session_id, timedelta(milliseconds=1))
    time.sleep(0.01)
    store.revoke_session(again.session_id, TTL)

    store.forget_expired(datetime.now(UTC) + EXPIRY_GRACE + timedelta(seconds=1), 1000)

    assert revoked(store, again)


def test_every_key_of_the_revocation_list_in_redis_expires_by_itself(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-{uuid4().hex}:"
    store = RedisRevocationList(client, redis_url, prefix=prefix)
    fill(store, TTL)
    store.changing([uuid4()])
    store.settle(uuid4(), 1)
    one_time = RedisOneTimeValues(client, prefix=prefix + "one-time:")
    one_time.put(b"challenge", "ceremony", datetime.now(UTC) + timedelta(minutes=5))

    keys = client.keys(prefix + "*")
    kinds = {key.decode().removeprefix(prefix).split(":")[0] for key in keys}
    assert kinds == {"revoked", "mark", "written", "one-time"}
    assert len(keys) == 8  # session, account, app, 3 marks, a written position, a value
    longest = max(MARK_TTL, TTL, CHANGING_TTL, timedelta(minutes=6))
    for key in keys:
        assert 0 < client.pttl(key) <= longest // timedelta(milliseconds=1), key
    client.close()


def test_a_revocation_in_redis_outlives_its_time_by_the_same_grace(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    prefix = f"test-{uuid4().hex}:"
    store = RedisRevocationList(client, redis_url, prefix=prefix)
    fill(store, TTL)

    keys = client.keys(prefix + "revoked:*")
    assert len(keys) == 3  # a session, an account's cutoff, an app's
    for key in keys:
        assert client.pttl(key) > (TTL + EXPIRY_GRACE - timedelta(seconds=5)) // timedelta(
            milliseconds=1
        ), key
    client.close()


@pytest.mark.parametrize(
    ("deployment", "role"), [("sqlite", "serve"), ("postgres", "serve"), ("postgres", "projector")]
)
def test_the_background_work_purges_expired_revocations(
    deployment: str, role: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """What `tessera serve` (and `tessera projector`, if one runs) starts where the revocation
    list is in tables (no Redis): a pass at once, on a thread of its own."""
    environ = {"DATA_DIR": str(tmp_path / "var"), **FAST_ARGON2}
    if deployment == "postgres":
        environ["DATABASE_URL"] = request.getfixturevalue("postgres").new_database()
    container = build(load_settings(environ), clock=FakeClock())
    try:
        expired, alive = claims(), claims()
        container.revocations.revoke_session(expired.session_id, GONE)
        container.revocations.revoke_session(alive.session_id, TTL)
        time.sleep(0.01)
        assert revoked(container.revocations, expired)  # no pass yet

        if role == "serve":
            container.start_background()
        else:
            threading.Thread(target=container.run_projectors, daemon=True).start()

        deadline = time.monotonic() + 10
        while not running("expired-state") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running("expired-state")
        while revoked(container.revocations, expired) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not revoked(container.revocations, expired)
        assert revoked(container.revocations, alive)
    finally:
        container.close()


def test_nothing_is_purged_by_hand_where_redis_holds_the_revocation_list(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings = load_settings(
        {
            "DATA_DIR": str(tmp_path / "var"),
            "DATABASE_URL": request.getfixturevalue("postgres").new_database(),
            "REDIS_URL": request.getfixturevalue("redis_url"),
            **FAST_ARGON2,
        }
    )
    container = build(settings, clock=FakeClock())
    try:
        runner = threading.Thread(target=container.run_projectors, daemon=True)
        runner.start()  # `tessera projector`
        deadline = time.monotonic() + 10
        while not running("projector-accounts") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running("projector-accounts")  # started after the purge would be
        assert not running("expired-state")
    finally:
        container.close()
        runner.join(timeout=10)


def test_a_real_tessera_serve_purges_its_revocations_file(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from tests.e2e.test_serve import serving

    path = tmp_path / "var" / "revocations.sqlite"
    path.parent.mkdir()
    before = SqliteRevocationList(path)  # as the last run left it
    expired, alive = claims(), claims()
    before.revoke_session(expired.session_id, GONE)
    before.revoke_session(alive.session_id, TTL)
    before.close()

    def sessions() -> set[str]:
        with sqlite3.connect(path) as db:
            return {row[0] for row in db.execute("SELECT session_id FROM revoked_sessions")}

    with serving("sqlite", request, tmp_path):
        deadline = time.monotonic() + 20
        while str(expired.session_id) in sessions() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sessions() == {str(alive.session_id)}


def test_building_the_expiry_indexes_does_not_hold_off_logouts(
    request: pytest.FixtureRequest,
) -> None:
    """A first start on a database an older version left without the `until` indexes builds
    them while logouts go on: a plain CREATE INDEX would queue every logout behind its build
    (and behind any logout in flight when it started)."""
    url = request.getfixturevalue("postgres").new_database()
    PostgresRevocationList(ConnectionPool(url, open=True)).close()
    with psycopg.connect(url, autocommit=True) as admin:
        for table in TABLES[:3]:
            admin.execute(f"DROP INDEX tessera_{table}_until")
    with psycopg.connect(url) as in_flight:  # a logout whose transaction is still open
        in_flight.execute("INSERT INTO tessera_revoked_sessions VALUES (%s, 1)", (uuid4(),))
        built: list[PostgresRevocationList] = []
        starting = threading.Thread(
            target=lambda: built.append(PostgresRevocationList(ConnectionPool(url, open=True)))
        )
        starting.start()
        try:
            with psycopg.connect(url, autocommit=True) as watcher:
                deadline = time.monotonic() + 10
                waiting = False
                while not waiting and time.monotonic() < deadline:
                    time.sleep(0.05)
                    row = watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE query LIKE 'CREATE INDEX%%' AND wait_event_type = 'Lock'"
                    ).fetchone()
                    waiting = row is not None and row[0] > 0
                assert waiting  # the build waits for the logout in flight

                # Meanwhile another logout goes through at once.
                watcher.execute("SET statement_timeout = '2s'")
                watcher.execute("INSERT INTO tessera_revoked_sessions VALUES (%s, 1)", (uuid4(),))
        finally:
            in_flight.commit()
            starting.join(timeout=20)
    assert built
    built[0].close()
    with psycopg.connect(url) as check:
        valid = check.execute(
            "SELECT count(*) FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid"
            " WHERE relname LIKE 'tessera_revoked_%%_until' AND indisvalid"
        ).fetchone()
    assert valid == (3,)
