"""No reader ever passes a position behind which an event can still commit: the guarantee the
projections and the mail outbox rely on, under saves that commit out of order on purpose."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from application.persistence.event_log import EventLog
from domain.account import Account, EmailClaim
from infrastructure.event_store import HELD_BACK_WAIT, ConcurrentRecorder
from infrastructure.key_rotation import KeyLifetimes, ServiceKeyRotation
from infrastructure.persistence import Database
from tests.conftest import FakeClock, data_keys
from tests.servers import PostgresCluster

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def claim() -> EmailClaim:
    return EmailClaim(id=uuid4(), account_id=uuid4(), timestamp=NOW)


def stored(log: EventLog, aggregate: EmailClaim) -> list[StoredEvent]:
    return [log.mapper.to_stored_event(e) for e in aggregate.collect_events()]


def read_all(log: EventLog, start: int = 1) -> list[int]:
    return [n.id for n in log.recorder.select_notifications(start=start, limit=1000)]


@contextlib.contextmanager
def open_save(
    recorder: ConcurrentRecorder, events: list[StoredEvent], rollback: bool = False
) -> Iterator[list[int]]:
    """A save whose ids are allocated and whose transaction stays open until the block ends."""
    with (
        recorder.datastore.get_connection() as conn,
        conn.cursor() as curs,
        conn.transaction(force_rollback=rollback),
    ):
        yield recorder.record(curs, events)


@pytest.fixture
def pg_log(postgres: PostgresCluster, tmp_path: Path) -> Iterator[EventLog]:
    database = Database(url=postgres.new_database(), sqlite_path=tmp_path / "unused.sqlite")
    log = EventLog(data_keys(tmp_path), env=database.eventsourcing_env())
    assert isinstance(log.recorder, ConcurrentRecorder)
    yield log
    log.close()


def test_a_reader_waits_for_an_earlier_position_committed_after_a_later_one(
    pg_log: EventLog,
) -> None:
    recorder = pg_log.recorder
    assert isinstance(recorder, ConcurrentRecorder)
    pg_log.save(claim())
    (before,) = read_all(pg_log)
    with open_save(recorder, stored(pg_log, claim())) as (first,):  # A: not committed yet
        (later,) = [r.notification.id for r in pg_log.save(claim())]  # B: committed
        assert before < first < later
        # Out of order for real: the library's reader, which trusts its table lock, would
        # hand out B's position while A, before it, can still commit.
        naive = PostgresApplicationRecorder.select_notifications(recorder, before + 1, 10)
        assert [n.id for n in naive] == [later]
        assert read_all(pg_log, before + 1) == []
        assert recorder.max_notification_id() == before
    # A has committed.
    assert read_all(pg_log, before + 1) == [first, later]
    assert recorder.max_notification_id() == later


def test_a_reader_takes_the_settled_events_at_once_not_waiting_for_one_held_back(
    pg_log: EventLog,
) -> None:
    recorder = pg_log.recorder
    assert isinstance(recorder, ConcurrentRecorder)
    (settled,) = [r.notification.id for r in pg_log.save(claim())]
    with open_save(recorder, stored(pg_log, claim())) as (held,):  # not committed yet
        (later,) = [r.notification.id for r in pg_log.save(claim())]
        started = time.monotonic()
        assert read_all(pg_log) == [settled]  # the prefix, without the wait for `held`
        assert time.monotonic() - started < HELD_BACK_WAIT / 2
    assert read_all(pg_log, settled + 1) == [held, later]


def test_a_rolled_back_save_leaves_a_gap_the_reader_passes_once_settled(pg_log: EventLog) -> None:
    recorder = pg_log.recorder
    assert isinstance(recorder, ConcurrentRecorder)
    with open_save(recorder, stored(pg_log, claim()), rollback=True) as (lost,):
        (later,) = [r.notification.id for r in pg_log.save(claim())]
        assert read_all(pg_log) == []
    assert read_all(pg_log) == [later]
    assert lost < later


def test_concurrent_saves_committing_out_of_order_are_all_read_once_in_order(
    pg_log: EventLog,
) -> None:
    """Writers hold their transactions open for random times after their ids are allocated, and
    some roll back; a reader tails the log meanwhile. It must read every committed event,
    each once, in id order: a position passed too early would lose the events behind it."""
    recorder = pg_log.recorder
    assert isinstance(recorder, ConcurrentRecorder)
    stop = threading.Event()
    read: list[int] = []
    failures: list[BaseException] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(40):
                events = [e for _ in range(rng.randint(1, 3)) for e in stored(pg_log, claim())]
                with open_save(recorder, events, rollback=rng.random() < 0.1):
                    time.sleep(rng.uniform(0, 0.004))
        except BaseException as error:
            failures.append(error)

    def tail() -> None:
        position = 0
        while not stop.is_set():
            batch = [n.id for n in recorder.select_notifications(start=position + 1, limit=7)]
            read.extend(batch)
            position = batch[-1] if batch else position
        read.extend(read_all(pg_log, position + 1))

    reader = threading.Thread(target=tail)
    reader.start()
    writers = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    reader.join()
    assert not failures
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            SQL("SELECT notification_id FROM {0}").format(Identifier(recorder.events_table_name))
        )
        committed = sorted(row["notification_id"] for row in curs)
    assert len(committed) > 200
    assert read == committed


def test_sqlite_serialises_writers_so_ids_commit_in_order(tmp_path: Path) -> None:
    """SQLite has one writer at a time: a save that would take a later id waits for the open
    transaction that took an earlier one (here another connection, as another process would
    be), so there is no out-of-order commit for a reader to pass."""
    database = Database(url=None, sqlite_path=tmp_path / "events.sqlite")
    log = EventLog(data_keys(tmp_path), env=database.eventsourcing_env())
    recorder: Any = log.recorder
    (event,) = stored(log, claim())
    other = sqlite3.connect(database.sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock any insert takes
    other.execute(
        recorder.insert_events_statement,
        (event.originator_id.hex, event.originator_version, event.topic, event.state),
    )
    saved: list[int] = []
    saver = threading.Thread(
        target=lambda: saved.extend(r.notification.id for r in log.save(claim()))
    )
    saver.start()
    saver.join(timeout=0.5)
    assert saver.is_alive()  # waiting for the write lock, not committed past the open one
    assert read_all(log) == []
    other.execute("COMMIT")
    saver.join(timeout=10)
    assert not saver.is_alive()
    ids = read_all(log)
    assert len(ids) == 2
    assert ids[1] == saved[0]  # the waiting save took the later id
    other.close()
    log.close()


def test_key_rotation_finds_the_accounts_registered_after_a_save_in_flight(
    pg_log: EventLog,
) -> None:
    """A page read while a save is in flight is only the settled prefix, short though more
    follows: the rotation must not take it for the end of the accounts (and report none left
    while some still hold values under the old key)."""

    def account() -> Account:
        return Account(
            email=f"{uuid4().hex}@example.com", username="u", password_hash="h", timestamp=NOW
        )

    recorder = pg_log.recorder
    assert isinstance(recorder, ConcurrentRecorder)
    first, later = account(), account()
    pg_log.save(first)
    opened, commit = threading.Event(), threading.Event()

    def hold() -> None:
        with open_save(recorder, stored(pg_log, claim())):
            opened.set()
            commit.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert opened.wait(10)
        pg_log.save(later)  # committed, behind the save still open
        threading.Timer(0.3, commit.set).start()  # settles in the time a save takes
        lifetimes = KeyLifetimes(refresh_token=timedelta(days=30), mailed_token=timedelta(days=1))
        rotation = ServiceKeyRotation(pg_log.keys, pg_log, FakeClock(), lifetimes)
        found = list(rotation._accounts(get_topic(Account.Registered)))
    finally:
        commit.set()
        holder.join(10)
    assert found == [first.id, later.id]
