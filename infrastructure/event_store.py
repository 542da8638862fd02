"""The PostgreSQL event store's writers and readers, without the library's cluster-wide queue.

The library's recorder keeps notification ids in commit order by holding `LOCK TABLE ... IN
EXCLUSIVE MODE` from before the insert until after the commit, across the client's round
trips and the commit's WAL flush: every save in the cluster waits for the one before it
(about 290 saves/s however many processes write). Readers (projections, the mail outbox)
rely on what that buys: no reader ever passes a position behind which an event can still
commit.

`ConcurrentRecorder` keeps that guarantee another way. A save allocates its transaction id and
its notification ids together, under an advisory lock held for those few microseconds inside
the server, so notification-id order is transaction-id order; it then inserts and commits
with no lock at all, so commits overlap and share WAL flushes. Every event row carries its
transaction id (`transaction_id xid8`), and readers return only events whose transaction is
older than the oldest one still running (`pg_snapshot_xmin`): every event with a lower id is
then committed or never will be. An event whose transaction is younger waits for the next
read (see `select_notifications`).

`LockedInServerRecorder` is the other known way, kept to measure against (`make bench`'s
saves scenario): the same table lock, taken, used and released inside one autocommit call of a
server-side function, so it is held across the commit's WAL flush but no client round trip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import (
    InterfaceError,
    Notification,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

log = logging.getLogger(__name__)

# Key of the advisory lock around allocating a save's transaction id and notification ids.
ALLOCATION_LOCK = 0x7E55E7B
# How long a read waits for the transactions that hold back events it can already see.
HELD_BACK_WAIT = 1.0
_HELD_BACK_POLL = 0.002


class _FunctionRecorder(PostgresApplicationRecorder):
    """Saves through one server-side function, called in autocommit: one round trip a save.

    No NOTIFY: the projections poll, and a notifying commit takes a cluster-wide lock through
    its WAL flush (PostgreSQL serialises them), which would bring the queue back.
    """

    function_name = ""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self._function = Identifier(
            self.datastore.schema, f"{self.function_name}_{self.datastore.originator_id_type}"
        )
        self._call = SQL("SELECT id FROM {0}(%s) AS id").format(self._function)
        self._sql = {
            "schema": Identifier(self.datastore.schema),
            "table": Identifier(self.datastore.schema, self.events_table_name),
            "event": Identifier(self.datastore.schema, self.stored_event_type_name),
            "function": self._function,
            "sequence": Identifier(
                self.datastore.schema, f"{self.events_table_name}_notification_id_seq"
            ),
        }

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:
        if not stored_events:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            assert conn.autocommit  # the call is its own transaction
            return self.record(curs, stored_events)

    def record(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> list[int]:
        """Inserts the events in the cursor's transaction; returns their notification ids."""
        events = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        curs.execute(self._call, (events,), prepare=True)
        return [row["id"] for row in curs]


class LockedInServerRecorder(_FunctionRecorder):
    """The library's table lock, held only inside the server: lock, insert and commit in one
    autocommit statement. Its ceiling is one commit's WAL flush per save."""

    function_name = "tessera_insert_events_locked"

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {function}(events {event}[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $$ BEGIN "
                "LOCK TABLE {table} IN EXCLUSIVE MODE; "
                "RETURN QUERY INSERT INTO {table} "
                "(originator_id, originator_version, topic, state) "
                "SELECT originator_id, originator_version, topic, state FROM unnest(events) "
                "RETURNING notification_id; "
                "END $$"
            ).format(**self._sql)
        )


class ConcurrentRecorder(_FunctionRecorder):
    """Saves that do not wait for each other; readers bounded by the oldest running transaction."""

    function_name = "tessera_insert_events"

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        # Migration, idempotent: rows written before it have no transaction id and were written
        # under the table lock, so they count as settled. A recorder of the library's that still
        # writes (a rolling upgrade) gets its rows' transaction ids from the default.
        self.sql_create_statements += [
            # Only when missing: ALTER TABLE waits for every query on the table, even to do
            # nothing, and each process runs this as it starts.
            SQL(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_attribute "
                "WHERE attrelid = {table_name}::regclass AND attname = 'transaction_id') THEN "
                "ALTER TABLE {table} ADD COLUMN transaction_id xid8; "  # no rewrite: NULLs
                "ALTER TABLE {table} ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id(); "
                "END IF; END $$"
            ).format(table_name=self._sql["table"].as_string(), **self._sql),
            SQL(
                "CREATE OR REPLACE FUNCTION {function}(events {event}[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $$ "
                "DECLARE tx xid8; ids bigint[]; BEGIN "
                # An xid taken before the lock could be older than one taken under it after.
                "IF pg_current_xact_id_if_assigned() IS NOT NULL THEN "
                "RAISE EXCEPTION 'events must be the first write of their transaction'; END IF; "
                "BEGIN "
                # Taken inside the block, so that a cancel arriving as the lock is granted is
                # caught by the handler below: a session lock outlives every error otherwise.
                "PERFORM pg_advisory_lock({lock}); "
                "tx := pg_current_xact_id(); "
                "ids := ARRAY(SELECT nextval({sequence_name}::regclass) "
                "FROM generate_series(1, cardinality(events))); "
                # Released on every way out, cancels included (unlocking a lock not yet granted
                # only warns).
                "EXCEPTION WHEN OTHERS OR query_canceled THEN "
                "PERFORM pg_advisory_unlock({lock}); RAISE; END; "
                "PERFORM pg_advisory_unlock({lock}); "
                "RETURN QUERY INSERT INTO {table} "
                "(originator_id, originator_version, topic, state, notification_id, transaction_id) "
                "SELECT e.originator_id, e.originator_version, e.topic, e.state, ids[e.n], tx "
                "FROM unnest(events) WITH ORDINALITY "
                "AS e(originator_id, originator_version, topic, state, n) "
                "ORDER BY e.n "
                "RETURNING notification_id; "
                "END $$"
            ).format(
                lock=ALLOCATION_LOCK,
                sequence_name=self._sql["sequence"].as_string(),
                **self._sql,
            ),
        ]
        self._settled = SQL(
            "(transaction_id IS NULL OR transaction_id < pg_snapshot_xmin(pg_current_snapshot()))"
        )
        self.max_notification_id_statement = SQL(
            "SELECT MAX(notification_id) FROM {table} WHERE {settled}"
        ).format(table=self._sql["table"], settled=self._settled)
        self._last_recorded = SQL("SELECT MAX(notification_id) AS id FROM {table}").format(
            table=self._sql["table"]
        )
        # A transaction id greater than any this cluster has handed out came with the row from
        # another cluster (pg_dump/pg_restore, or a promoted logical replica): it orders
        # nothing here, and no transaction of this cluster will ever get that old. The row is
        # committed (a dump and a subscription copy only committed rows), so it is settled.
        self._sequence_state = SQL(
            "SELECT (SELECT MAX(notification_id) FROM {table}) AS last_event, "
            "CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next FROM {sequence}"
        ).format(table=self._sql["table"], sequence=self._sql["sequence"])
        self._move_sequence = SQL("SELECT setval({sequence_name}::regclass, %s)").format(
            sequence_name=self._sql["sequence"].as_string()
        )
        self._adopt = SQL(
            "UPDATE {table} SET transaction_id = NULL WHERE transaction_id > pg_current_xact_id()"
        ).format(table=self._sql["table"])

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._adopt)
            adopted = curs.rowcount
            # Logical replication copies rows, not sequences: on a promoted subscriber the
            # notification id sequence starts again below the copied events, and every save
            # would collide with one of them. Moved past them under the allocation lock, so no
            # save allocates meanwhile (and never moved back).
            curs.execute(SQL("SELECT pg_advisory_xact_lock({})").format(ALLOCATION_LOCK))
            curs.execute(self._sequence_state)
            row = curs.fetchone()
            last_event, next_id = (row["last_event"] or 0, row["next"]) if row else (0, 1)
            behind = last_event - next_id + 1
            if behind > 0:
                curs.execute(self._move_sequence, (last_event,))
        if adopted > 0:
            log.warning(
                "%d events were copied from another PostgreSQL cluster (a restore or a "
                "promoted replica): their transaction ids, which order nothing in this one, "
                "were cleared so that every reader passes them",
                adopted,
            )
        if behind > 0:
            log.warning(
                "the event store's position sequence was %d behind its last event (a promoted "
                "logical replica copies rows, not sequences): moved past it",
                behind,
            )

    def last_recorded_id(self) -> int:
        """The last position recorded, settled or not: where a whole read must end."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._last_recorded)
            row = curs.fetchone()
        return int(row["id"] or 0) if row else 0

    def _select(
        self,
        start: int | None,
        limit: int,
        stop: int | None,
        topics: Sequence[str],
        inclusive_of_start: bool,
    ) -> tuple[Composed, list[Any]]:
        conditions: list[Composed | SQL] = []
        params: list[Any] = []
        if start is not None:
            conditions.append(
                SQL("notification_id >= %s" if inclusive_of_start else "notification_id > %s")
            )
            params.append(start)
        if stop is not None:
            conditions.append(SQL("notification_id <= %s"))
            params.append(stop)
        if topics:
            conditions.append(SQL("topic = ANY(%s)"))
            params.append(list(topics))
        where = SQL(" WHERE ") + SQL(" AND ").join(conditions) if conditions else SQL("")
        statement = SQL(
            "SELECT *, {settled} AS settled FROM {table}{where} ORDER BY notification_id LIMIT %s"
        ).format(settled=self._settled, table=self._sql["table"], where=where)
        return statement, [*params, limit]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The notifications from `start`, only as far as no event can still commit before them.

        Notification ids follow transaction ids, so the settled events (those of transactions
        older than the oldest still running) are a prefix. When the read can see events past
        that prefix (committed, but behind a transaction still running) and none in it, it
        waits up to HELD_BACK_WAIT for that transaction: saves take milliseconds, and a caller
        that reads until nothing is left (`Projector.catch_up`) should not stop at a save in
        flight. A settled prefix is returned at once (its caller reads the rest next): under a
        steady stream of saves one is nearly always in flight, and waiting for each would hold
        every reader (the webhook feed's deliveries among them) behind it.
        """
        statement, params = self._select(start, limit, stop, topics, inclusive_of_start)
        deadline = time.monotonic() + HELD_BACK_WAIT
        while True:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(statement, params, prepare=True)
                rows = curs.fetchall()
            if not rows or rows[0]["settled"] or time.monotonic() >= deadline:
                break
            time.sleep(_HELD_BACK_POLL)
        notifications = []
        for row in rows:
            if not row["settled"]:
                break  # never past an event that a transaction still running may precede
            notifications.append(
                Notification(
                    id=row["notification_id"],
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
            )
        return notifications
