"""A save's allocation lock never outlives the save: cancelled while it waits for the lock,
while it holds it, or aborted by anything between lock and unlock, the next saves from other
connections go through (with no timeout of their own, a leaked lock would stop them all)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from application.persistence.event_log import EventLog
from domain.account import EmailClaim
from infrastructure.event_store import ALLOCATION_LOCK, ConcurrentRecorder
from infrastructure.persistence import Database, fail_fast
from tests.conftest import data_keys
from tests.servers import PostgresCluster

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SAVE_DEADLINE = 10.0  # seconds: a save that takes longer is waiting on a leaked lock


@pytest.fixture
def database(postgres: PostgresCluster, tmp_path: Path) -> Database:
    return Database(url=postgres.new_database(), sqlite_path=tmp_path / "unused.sqlite")


@pytest.fixture
def log(database: Database, tmp_path: Path) -> Iterator[EventLog]:
    log = EventLog(data_keys(tmp_path), env=database.eventsourcing_env())
    fail_fast(log.recorder, log.outage)  # as the container wires it
    assert isinstance(log.recorder, ConcurrentRecorder)
    yield log
    log.close()


def save_in_thread(log: EventLog) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            log.save(EmailClaim(id=uuid4(), account_id=uuid4(), timestamp=NOW))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def saves_go_through(log: EventLog, count: int = 5) -> None:
    """`count` saves at once, each on its own pooled connection, all within the deadline."""
    started = [save_in_thread(log) for _ in range(count)]
    for thread, errors in started:
        thread.join(SAVE_DEADLINE)
        assert not thread.is_alive(), "a save waits on a lock nobody will release"
        assert errors == []


def advisory_holders(database: Database) -> int:
    with psycopg.connect(database.postgres_conninfo(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
            (ALLOCATION_LOCK,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def wait_for_backend(database: Database, wait_event: str) -> int:
    """The pid of the save's backend once it waits for a lock of kind `wait_event`."""
    name = conninfo_to_dict(database.url or "")["dbname"]
    deadline = time.monotonic() + SAVE_DEADLINE
    with psycopg.connect(database.postgres_conninfo(), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                "AND wait_event = %s AND query LIKE %s",
                (name, wait_event, "%tessera_insert_events%"),
            ).fetchone()
            if row is not None:
                return int(row[0])
            time.sleep(0.01)
    raise AssertionError(f"no save waited for a lock of kind {wait_event}")


def cancel(database: Database, pid: int) -> None:
    with psycopg.connect(database.postgres_conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_cancel_backend(%s)", (pid,))


def test_a_save_cancelled_while_it_waits_for_the_lock_leaves_none_held(
    log: EventLog, database: Database
) -> None:
    with psycopg.connect(database.postgres_conninfo(), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (ALLOCATION_LOCK,))
        thread, errors = save_in_thread(log)
        cancel(database, wait_for_backend(database, "advisory"))
        time.sleep(0.1)  # the library retries the cancelled save: it waits again
        holder.execute("SELECT pg_advisory_unlock(%s)", (ALLOCATION_LOCK,))
    thread.join(SAVE_DEADLINE)
    assert not thread.is_alive() and errors == []  # the retried save went through
    saves_go_through(log)
    assert advisory_holders(database) == 0


def test_a_save_cancelled_while_it_holds_the_lock_releases_it(
    log: EventLog, database: Database
) -> None:
    """The save holds the allocation lock while it takes its notification ids; a lock on the
    sequence makes it wait right there, lock in hand, to be cancelled."""
    with psycopg.connect(database.postgres_conninfo()) as blocker:
        blocker.execute("ALTER SEQUENCE tessera_events_notification_id_seq CACHE 1")
        thread, _ = save_in_thread(log)
        pid = wait_for_backend(database, "relation")
        assert advisory_holders(database) == 1  # held, while it waits on the sequence
        cancel(database, pid)
        deadline = time.monotonic() + SAVE_DEADLINE
        while advisory_holders(database) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert advisory_holders(database) == 0, "the cancelled save released its lock"
        blocker.rollback()
    thread.join(SAVE_DEADLINE)
    saves_go_through(log)


def test_a_use_of_a_pooled_connection_aborted_with_a_lock_held_leaves_it_in_no_pool(
    log: EventLog, database: Database
) -> None:
    """Whatever aborts a use of a connection between a lock and its unlock (a client going
    away, a timeout in the client), the connection goes back to the pool without the lock."""
    datastore = log.recorder.datastore  # type: ignore[attr-defined]
    with pytest.raises(TimeoutError), datastore.get_connection() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ALLOCATION_LOCK,))
        raise TimeoutError("the caller gave up")
    assert advisory_holders(database) == 0
    saves_go_through(log)
