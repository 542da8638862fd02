"""The delivery ledger: one row per mail-worthy event, written with the projection's tracking
record in one transaction, then claimed, sent and closed by workers.

It is what makes delivery at-least-once and idempotent: the row exists exactly once per event
(the projection's tracking makes sure), a worker claims it before sending (two copies of a
message cannot both send), and a claim that outlives a dead worker expires so the mail is tried
again rather than lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.ports import DeliveryBusy, PendingMail

QUEUED, SENDING, SENT, DEAD = "queued", "sending", "sent", "dead"


def _schema(table: str, uuid_type: str, real_type: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {table} ("
        f" key text PRIMARY KEY, originator_id {uuid_type} NOT NULL, originator_version integer"
        " NOT NULL, status text NOT NULL, attempts integer NOT NULL DEFAULT 0,"
        f" claimed_until {real_type}, updated_at {real_type} NOT NULL, account_id {uuid_type})",
        f"CREATE INDEX IF NOT EXISTS {table}_status ON {table} (status)",
    ]


def _account_index(table: str) -> str:
    return f"CREATE INDEX IF NOT EXISTS {table}_account ON {table} (account_id)"


class LedgerQueries:
    """The ledger's statements, written once; each store's class names its table and the
    driver's parameter marker."""

    table: str
    marker: str
    datastore: Any
    _insert_tracking: Any  # the tracking recorder's, which this class is mixed into

    def _sql(self, statement: str) -> str:
        return statement.replace("{table}", self.table).replace("?", self.marker)

    def record(self, mail: PendingMail, at: datetime, tracking: Tracking | None) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "INSERT INTO {table} (key, originator_id, originator_version, account_id,"
                    " status, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING"
                ),
                (
                    mail.key,
                    str(mail.originator_id),
                    mail.originator_version,
                    None if mail.account_id is None else str(mail.account_id),
                    QUEUED,
                    at.timestamp(),
                ),
            )
            if tracking is not None:
                self._insert_tracking(c, tracking)

    def claim(self, key: str, at: datetime, ttl: timedelta) -> PendingMail | None:
        """The mail, now this worker's to send; None if it was sent or given up already."""
        now = at.timestamp()
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "UPDATE {table} SET status = ?, claimed_until = ?, attempts = attempts + 1,"
                    " updated_at = ? WHERE key = ? AND (status = ? OR (status = ?"
                    " AND claimed_until < ?))"
                    " RETURNING originator_id, originator_version, account_id"
                ),
                (SENDING, now + ttl.total_seconds(), now, key, QUEUED, SENDING, now),
            )
            row = c.fetchone()
            if row is not None:
                account_id = row["account_id"]
                return PendingMail(
                    key,
                    UUID(str(row["originator_id"])),
                    int(row["originator_version"]),
                    None if account_id is None else UUID(str(account_id)),
                )
            c.execute(self._sql("SELECT status FROM {table} WHERE key = ?"), (key,))
            status = c.fetchone()
        if status is not None and status["status"] == SENDING:
            raise DeliveryBusy(key)
        return None

    def extend(self, key: str, until: datetime) -> None:
        """The claim's holder is still at it (a slow SMTP conversation)."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql("UPDATE {table} SET claimed_until = ? WHERE key = ? AND status = ?"),
                (until.timestamp(), key, SENDING),
            )

    def close_delivery(self, key: str, status: str, at: datetime) -> None:
        """Sent is final: a late "dead" from a worker that lost the race changes nothing."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "UPDATE {table} SET status = ?, claimed_until = NULL, updated_at = ?"
                    " WHERE key = ? AND status <> ?"
                ),
                (status, at.timestamp(), key, SENT),
            )

    def release(self, key: str, at: datetime) -> None:
        """A failed try: back in the queue for the next (a retry, or the redelivery sweep)."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "UPDATE {table} SET status = ?, claimed_until = NULL, updated_at = ?"
                    " WHERE key = ? AND status = ?"
                ),
                (QUEUED, at.timestamp(), key, SENDING),
            )

    def stale(self, at: datetime, older_than: timedelta) -> list[str]:
        """Deliveries no message may still be carrying: queued long ago, or claims run out."""
        cutoff = (at - older_than).timestamp()
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql(
                    "SELECT key FROM {table} WHERE (status = ? AND updated_at <= ?)"
                    " OR (status = ? AND claimed_until < ?) ORDER BY updated_at LIMIT 1000"
                ),
                (QUEUED, cutoff, SENDING, at.timestamp()),
            )
            return [str(row["key"]) for row in c.fetchall()]

    def unclaimed(self, limit: int = 1000) -> list[str]:
        """Queued deliveries no worker has claimed yet, the newest first."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql(
                    "SELECT key FROM {table} WHERE status = ? AND attempts = 0"
                    " ORDER BY updated_at DESC LIMIT ?"
                ),
                (QUEUED, limit),
            )
            return [str(row["key"]) for row in c.fetchall()]

    def keys_of(self, account_id: UUID) -> list[str]:
        """Every delivery of the account's, whatever its status. A row recorded before the
        ledger kept the account is found by its event, when the event is the account's own."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql(
                    "SELECT key FROM {table} WHERE account_id = ?"
                    " OR (account_id IS NULL AND originator_id = ?)"
                ),
                (str(account_id), str(account_id)),
            )
            return [str(row["key"]) for row in c.fetchall()]

    def deliveries(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        keys = list(keys)
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT key, status, updated_at FROM {{table}} WHERE key IN ({marks})"  # noqa: S608
            with self.datastore.transaction(commit=False) as c:
                c.execute(self._sql(query), chunk)
                found += [dict(row) for row in c.fetchall()]
        return found

    def counts(self) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self._sql("SELECT status, count(*) AS n FROM {table} GROUP BY status"))
            return {str(row["status"]): int(row["n"]) for row in c.fetchall()}


class SqliteMailLedger(LedgerQueries, SQLiteTrackingRecorder):
    table = "mail_deliveries"
    marker = "?"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *_schema(self.table, "TEXT", "REAL"),
        ]

    def _create_table(self, c: Any) -> None:
        super()._create_table(c)
        # A ledger from before it kept each delivery's account gains the column (NULLs).
        c.execute(f"PRAGMA table_info({self.table})")
        if "account_id" not in {row[1] for row in c.fetchall()}:
            c.execute(f"ALTER TABLE {self.table} ADD COLUMN account_id TEXT")
        c.execute(_account_index(self.table))


class PostgresMailLedger(LedgerQueries, PostgresTrackingRecorder):
    table = "tessera_mail_deliveries"
    marker = "%s"

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.extend(
            SQL("{}").format(SQL(statement))  # type: ignore[arg-type, unused-ignore]
            for statement in [
                *_schema(self.table, "uuid", "double precision"),
                # A ledger from before it kept each delivery's account gains the column (NULLs).
                # Only when missing: ALTER TABLE waits for every query on the table, even to do
                # nothing, and each process runs this as it starts.
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid ="
                f" '{self.table}'::regclass AND attname = 'account_id') THEN"
                f" ALTER TABLE {self.table} ADD COLUMN account_id uuid; END IF; END $$",
                _account_index(self.table),
            ]
        )
