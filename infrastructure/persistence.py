"""Where events and read models live: the eventsourcing library's SQLite or PostgreSQL modules."""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from eventsourcing.persistence import InfrastructureFactory, Recorder
from eventsourcing.postgres import PostgresRecorder, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import Environment
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool

from application.persistence.event_log import OUTAGE_ERRORS, Outage

S = TypeVar("S", bound=SQLiteTrackingRecorder)
P = TypeVar("P", bound=PostgresTrackingRecorder)
_SCHEMA_LOCK = 0x7E55E7A  # any constant: the key of the advisory lock around table creation


# A pooled connection unused for this long is pinged before it is handed out (see fail_fast).
IDLE_PING_AFTER = 1.0


def fail_fast(recorder: Any, outage: Outage) -> None:
    """Tells `outage` of the first connection that cannot be had, not after the library's ten
    retries of it (twenty seconds and more), and refuses connections while the store is known to
    be down: its retries then end at once with Unavailable (a 503).

    A failure on a connection already had (one the server dropped, a deadlock) is no outage: the
    library retries it on another connection, and if the server is gone, getting that one fails
    and trips the outage then. (A soak run saw one dropped connection mark the store down for
    half a second: 73 needless 503s.)

    A connection that sat in the pool for IDLE_PING_AFTER seconds is pinged first, and replaced
    if the server dropped it (a restart): the library's pre-ping did that on every checkout, a
    round trip as long as the save it preceded (`make bench`'s saves scenario measured it).
    """
    datastore = recorder.datastore
    connect = datastore.get_connection
    pool_size = datastore.pool.max_size
    last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    @contextlib.contextmanager
    def live_connection() -> Iterator[Any]:
        for attempt in range(pool_size + 1):
            with connect() as conn:
                idle = time.monotonic() - last_used.get(conn, 0.0)
                if idle > IDLE_PING_AFTER and attempt < pool_size:
                    try:
                        ConnectionPool.check_connection(conn)
                    except psycopg.Error:
                        conn.close()  # the pool replaces a closed connection
                        continue
                try:
                    yield conn
                except BaseException:
                    _release_session_locks(conn)
                    raise
                finally:
                    last_used[conn] = time.monotonic()
                return

    @contextlib.contextmanager
    def get_connection() -> Iterator[Any]:
        outage.check()
        acquired = False
        try:
            with live_connection() as conn:
                acquired = True
                yield conn
        except OUTAGE_ERRORS as error:
            if not acquired:
                outage.failed(error)
            raise

    datastore.get_connection = get_connection


def _release_session_locks(conn: Any) -> None:
    """A pooled connection never holds a session-level advisory lock between two uses (the
    save's allocation lock lives for microseconds inside the server): whatever aborted this use
    (a cancel, a statement timeout, a client gone), none of its locks may stay with the pool,
    where every later save would wait for it with no timeout. One round trip, on errors only;
    a connection that cannot even do that is closed, which ends its session and its locks."""
    if conn.closed:
        return
    try:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.execute("SELECT pg_advisory_unlock_all()")
    except psycopg.Error:
        conn.close()


@dataclass(frozen=True)
class Database:
    """The one database that holds the events, the read models and their tracking records."""

    url: str | None  # postgresql://... ; None for the embedded SQLite file
    sqlite_path: Path

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    def eventsourcing_env(self, sqlite_path: Path | None = None) -> dict[str, str]:
        """Persistence is chosen by the library's own settings, derived here from DATABASE_URL."""
        if self.url is None:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(sqlite_path or self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": "10",
            }
        parts = conninfo_to_dict(self.url)
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(parts.get("dbname", "")),
            "POSTGRES_HOST": str(parts.get("host", "localhost")),
            "POSTGRES_PORT": str(parts.get("port", "5432")),
            "POSTGRES_USER": str(parts.get("user", "")),
            "POSTGRES_PASSWORD": str(parts.get("password", "")),
            # Also the longest wait for a pooled connection, which the library retries ten
            # times: an outage is detected in seconds (then answered at once, see Outage).
            "POSTGRES_CONNECT_TIMEOUT": "2",
            "POSTGRES_POOL_SIZE": "10",
            "POSTGRES_MAX_OVERFLOW": "10",
            # Not on every checkout: fail_fast pings only connections that sat idle.
            "POSTGRES_PRE_PING": "n",
            # Saves that do not queue behind each other (infrastructure/event_store.py).
            "APPLICATION_RECORDER_TOPIC": "infrastructure.event_store:ConcurrentRecorder",
        }

    def holds_a_store(self, events_table: str) -> bool:
        """Whether a store was made here already (its events table exists). Asks without
        making anything: no file, no table."""
        if self.url is None:
            return self.sqlite_path.is_file()
        with psycopg.connect(self.postgres_conninfo(), autocommit=True) as conn:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (events_table,)).fetchone()
        return bool(row and row[0])

    @property
    def place(self) -> str:
        """Where the store is, for people: the SQLite file, or the database without password."""
        if self.url is None:
            return str(self.sqlite_path.resolve())
        parts = conninfo_to_dict(self.url)
        where = f"{parts.get('host', 'localhost')}:{parts.get('port', '5432')}"
        return f"PostgreSQL database {parts.get('dbname', '')!r} on {where}"

    @contextlib.contextmanager
    def schema_lock(self) -> Iterator[None]:
        """Serialises table creation: several processes starting at once on a fresh PostgreSQL
        database would otherwise race in CREATE TABLE IF NOT EXISTS (a known PostgreSQL race)."""
        if self.url is None:
            yield
            return
        with psycopg.connect(self.postgres_conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))

    def postgres_conninfo(self) -> str:
        if self.url is None:
            raise ValueError("not a PostgreSQL database")
        parts = conninfo_to_dict(self.url)
        parts.setdefault("connect_timeout", "5")
        return " ".join(f"{k}={v!r}" if " " in str(v) else f"{k}={v}" for k, v in parts.items())

    def postgres_tracking_recorder(self, name: str, kind: type[P], events: Recorder) -> P:
        """A recorder of how far the projection called `name` has got (and, for a subclass, the
        view it maintains in the same transactions), in the event store's database. The event
        store's connection pool is shared: a pool per projection would multiply the connections
        every process holds."""
        assert isinstance(events, PostgresRecorder)
        recorder = kind(events.datastore, tracking_table_name=f"{name}_tracking")
        recorder.create_table()
        return recorder

    def sqlite_tracking_recorder(self, name: str, kind: type[S]) -> S:
        """The same on the embedded default: a file per projection, since the library keeps one
        tracking table per file (and a projection's writes then never wait on the event store's
        lock)."""
        factory = InfrastructureFactory[S].construct(
            Environment(name, self.eventsourcing_env(self.sqlite_path.with_name(f"{name}.sqlite")))
        )
        return factory.tracking_recorder(kind)


def snapshot_dropper(recorder: Any) -> Callable[[UUID], None]:
    """Deletes an aggregate's snapshots (the library has no such call): after an erasure, the
    account loads from its events, and no copy of its state outlives it in the store."""
    table = recorder.events_table_name
    datastore = recorder.datastore
    if isinstance(recorder, PostgresRecorder):

        def drop(aggregate_id: UUID) -> None:
            with datastore.transaction(commit=True) as c:
                c.execute(
                    SQL("DELETE FROM {} WHERE originator_id = %s").format(Identifier(table)),
                    (aggregate_id,),
                )

        return drop

    def drop_sqlite(aggregate_id: UUID) -> None:
        with datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {table} WHERE originator_id = ?", (aggregate_id.hex,))  # noqa: S608

    return drop_sqlite
