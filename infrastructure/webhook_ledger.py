"""The webhook deliveries' table, in the event store's database (a file of its own on the
embedded default, as the mail ledger), written with the feed's tracking record in one
transaction; and each endpoint's health (failing since when, paused or not).

Each lane (endpoint and account) is sent in `seq` order, the order the feed recorded it in;
only a lane's head is ever claimed, so a failing delivery holds the lane behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.webhooks.records import (
    DEAD,
    DROPPED,
    LANES_A_MESSAGE,
    QUEUED,
    SENDING,
    SENT,
    ClaimedDelivery,
    QueuedDelivery,
    ReplayCursor,
    Settlement,
)

# Lanes of one endpoint a sweep wakes at most: two messages' worth, what one process posts to
# at once (CourierSettings.lanes_per_endpoint); the rest are woken as these are sent.
DUE_LANES_PER_ENDPOINT = 2 * LANES_A_MESSAGE

# How much of a failure's reason a row keeps: the error's kind, never a response body.
_MAX_ERROR = 200


def _schema(table: str, health: str, replays: str, seq: str, real: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {table} ({seq}, id text NOT NULL UNIQUE,"
        " endpoint_id text NOT NULL, account_id text NOT NULL, lane text NOT NULL,"
        " position bigint NOT NULL, type text NOT NULL, body text NOT NULL,"
        " sealed_personal text NOT NULL, replay_id text, status text NOT NULL,"
        f" attempts integer NOT NULL DEFAULT 0, next_try_at {real} NOT NULL,"
        f" claimed_until {real}, last_status integer, last_error text,"
        f" created_at {real} NOT NULL, updated_at {real} NOT NULL)",
        # The heads of the lanes: only deliveries still to be sent are in it.
        f"CREATE INDEX IF NOT EXISTS {table}_lanes ON {table} (lane, seq)"
        f" WHERE status IN ('{QUEUED}', '{SENDING}')",
        f"CREATE INDEX IF NOT EXISTS {table}_endpoint ON {table} (endpoint_id, seq)",
        f"CREATE TABLE IF NOT EXISTS {health} (endpoint_id text PRIMARY KEY,"
        f" failing_since {real}, paused integer NOT NULL DEFAULT 0)",
        # The replays still being recorded: a row goes once its cursor passes its end.
        f"CREATE TABLE IF NOT EXISTS {replays} (replay_id text PRIMARY KEY,"
        " endpoint_id text NOT NULL, next_position bigint NOT NULL,"
        f" until_position bigint NOT NULL, held_until {real} NOT NULL)",
    ]


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class WebhookQueries:
    """The statements, written once; each store's class names its tables and marker."""

    table: str
    health: str
    replays: str
    marker: str
    # A head another courier is claiming or marking right now is passed over, not waited for
    # (its commit, an fsync): that courier has the lane. SQLite has one writer anyway.
    skip_locked: str = ""
    datastore: Any
    _insert_tracking: Any

    def _sql(self, statement: str) -> str:
        return (
            statement.replace("{table}", self.table)
            .replace("{health}", self.health)
            .replace("{replays}", self.replays)
            .replace("?", self.marker)
        )

    def record(
        self, deliveries: list[QueuedDelivery], at: datetime, tracking: Tracking | None
    ) -> None:
        with self.datastore.transaction(commit=True) as c:
            self._insert(c, deliveries, at)
            if tracking is not None:
                self._insert_tracking(c, tracking)

    def start_replay(self, cursor: ReplayCursor, at: datetime, ttl: timedelta) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "INSERT INTO {replays} (replay_id, endpoint_id, next_position,"
                    " until_position, held_until) VALUES (?, ?, ?, ?, ?)"
                ),
                (
                    cursor.replay_id,
                    cursor.endpoint_id,
                    cursor.next_position,
                    cursor.until_position,
                    (at + ttl).timestamp(),
                ),
            )

    def record_replayed(
        self,
        deliveries: list[QueuedDelivery],
        replay_id: str,
        next_position: int,
        at: datetime,
        ttl: timedelta,
    ) -> None:
        with self.datastore.transaction(commit=True) as c:
            self._insert(c, deliveries, at)
            # Never backwards: a second process on the same cursor records the same ids
            # (nothing new) and leaves it where the first one got to.
            c.execute(
                self._sql(
                    "UPDATE {replays} SET next_position = CASE WHEN next_position < ? THEN ?"
                    " ELSE next_position END, held_until = ? WHERE replay_id = ?"
                ),
                (next_position, next_position, (at + ttl).timestamp(), replay_id),
            )
            c.execute(
                self._sql(
                    "DELETE FROM {replays} WHERE replay_id = ? AND next_position > until_position"
                ),
                (replay_id,),
            )

    def claim_replays(self, at: datetime, ttl: timedelta) -> list[ReplayCursor]:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "UPDATE {replays} SET held_until = ? WHERE held_until < ? RETURNING"
                    " replay_id, endpoint_id, next_position, until_position"
                ),
                ((at + ttl).timestamp(), at.timestamp()),
            )
            rows = c.fetchall()
        return [
            ReplayCursor(
                replay_id=str(row["replay_id"]),
                endpoint_id=str(row["endpoint_id"]),
                next_position=int(row["next_position"]),
                until_position=int(row["until_position"]),
            )
            for row in rows
        ]

    def _insert(self, c: Any, deliveries: list[QueuedDelivery], at: datetime) -> None:
        now = at.timestamp()
        statement = self._sql(
            "INSERT INTO {table} (id, endpoint_id, account_id, lane, position, type, body,"
            " sealed_personal, replay_id, status, next_try_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
        )
        rows = [
            (
                d.id,
                d.endpoint_id,
                d.account_id,
                d.lane,
                d.position,
                d.type,
                d.body,
                d.sealed_personal,
                d.replay_id,
                QUEUED,
                now,
                now,
                now,
            )
            for d in deliveries
        ]
        # One statement for the batch (psycopg pipelines it): not a round trip a row.
        if rows:
            c.executemany(statement, rows)

    def claim_heads(
        self,
        lanes: Sequence[str],
        at: datetime,
        ttl: timedelta,
        settling: Settlement | None = None,
    ) -> list[ClaimedDelivery]:
        if not lanes:
            if settling:
                self.settle(settling, at)
            return []
        now = at.timestamp()
        marks = ", ".join("?" * len(lanes))
        # Only a lane's head: under concurrent claims, a head another courier took (or sent)
        # since this statement's snapshot fails the status check (checked again on the row
        # as locked), and its lane gives nothing.
        statement = self._sql(
            "UPDATE {table} SET status = ?, claimed_until = ?, attempts = attempts + 1,"  # noqa: S608 - markers only
            " updated_at = ? WHERE seq IN (SELECT seq FROM {table} WHERE seq IN"
            f" (SELECT min(seq) FROM {{table}} WHERE lane IN ({marks}) AND status IN (?, ?)"
            " GROUP BY lane) AND ((status = ? AND next_try_at <= ?) OR (status = ? AND"
            f" claimed_until < ?)){self.skip_locked})"
            " RETURNING id, lane, endpoint_id, account_id, type, body, sealed_personal, attempts"
        )
        with self.datastore.transaction(commit=True) as c:
            if settling:
                self._settle(c, settling, at)
            c.execute(
                statement,
                (
                    SENDING,
                    now + ttl.total_seconds(),
                    now,
                    *lanes,
                    QUEUED,
                    SENDING,
                    QUEUED,
                    now,
                    SENDING,
                    now,
                ),
            )
            rows = c.fetchall()
        order = {lane: i for i, lane in enumerate(lanes)}
        claimed = [
            ClaimedDelivery(
                id=str(row["id"]),
                lane=str(row["lane"]),
                endpoint_id=str(row["endpoint_id"]),
                account_id=str(row["account_id"]),
                type=str(row["type"]),
                body=str(row["body"]),
                sealed_personal=str(row["sealed_personal"]),
                attempts=int(row["attempts"]),
            )
            for row in rows
        ]
        return sorted(claimed, key=lambda d: order.get(d.lane, 0))

    def settle(self, settling: Settlement, at: datetime) -> None:
        if settling:
            with self.datastore.transaction(commit=True) as c:
                self._settle(c, settling, at)

    def _settle(self, c: Any, settling: Settlement, at: datetime) -> None:
        if settling.sent:
            c.executemany(
                self._sql(
                    "UPDATE {table} SET status = ?, claimed_until = NULL, last_status = ?,"
                    " last_error = NULL, updated_at = ? WHERE id = ?"
                ),
                [
                    (SENT, status, at.timestamp(), delivery_id)
                    for delivery_id, status in settling.sent
                ],
            )
            c.execute(
                self._sql(
                    "UPDATE {health} SET failing_since = NULL WHERE endpoint_id = ?"
                    " AND failing_since IS NOT NULL"
                ),
                (settling.endpoint_id,),
            )
        self._unclaim(c, settling.released, QUEUED, at)

    def drop(self, delivery_ids: Sequence[str], at: datetime) -> None:
        if delivery_ids:
            with self.datastore.transaction(commit=True) as c:
                self._unclaim(c, delivery_ids, DROPPED, at)

    def _unclaim(self, c: Any, delivery_ids: Sequence[str], status: str, at: datetime) -> None:
        """Claimed heads closed untried: the claim's count of tries undone."""
        if not delivery_ids:
            return
        marks = ", ".join("?" * len(delivery_ids))
        c.execute(
            self._sql(
                "UPDATE {table} SET status = ?, claimed_until = NULL,"  # noqa: S608 - markers only
                f" attempts = attempts - 1, updated_at = ? WHERE id IN ({marks})"
                " AND status = ?"
            ),
            (status, at.timestamp(), *delivery_ids, SENDING),
        )

    def failed(
        self,
        delivery_id: str,
        status: int | None,
        error: str,
        at: datetime,
        next_try_at: datetime | None,
    ) -> None:
        """Sent is final: a late failure from a courier that lost its claim changes nothing."""
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "UPDATE {table} SET status = ?, claimed_until = NULL, last_status = ?,"
                    " last_error = ?, next_try_at = ?, updated_at = ? WHERE id = ?"
                    " AND status <> ?"
                ),
                (
                    QUEUED if next_try_at is not None else DEAD,
                    status,
                    error[:_MAX_ERROR],
                    (next_try_at or at).timestamp(),
                    at.timestamp(),
                    delivery_id,
                    SENT,
                ),
            )

    def due_lanes(
        self, at: datetime, limit: int = 1000, quiet_for: timedelta = timedelta(0)
    ) -> list[str]:
        """A hanging endpoint's lanes stay due (no courier can take them), so they must not
        fill the `limit` ahead of other endpoints': each endpoint gives at most
        DUE_LANES_PER_ENDPOINT, taken in turns (every endpoint's first lane, then its second,
        ...), each endpoint's in log order."""
        now = at.timestamp()
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql(
                    "SELECT lane FROM (SELECT lane, seq, row_number() OVER (PARTITION BY"
                    " endpoint_id ORDER BY seq) AS turn FROM {table} WHERE seq IN (SELECT"
                    " min(seq) FROM {table} WHERE status IN (?, ?) GROUP BY lane) AND ((status = ?"
                    " AND next_try_at <= ? AND updated_at <= ?) OR (status = ? AND"
                    " claimed_until < ?)) AND endpoint_id NOT IN (SELECT endpoint_id FROM"
                    " {health} WHERE paused = 1)) AS due WHERE turn <= ? ORDER BY turn, seq"
                    " LIMIT ?"
                ),
                (
                    QUEUED,
                    SENDING,
                    QUEUED,
                    now,
                    now - quiet_for.total_seconds(),
                    SENDING,
                    now,
                    DUE_LANES_PER_ENDPOINT,
                    limit,
                ),
            )
            return [str(row["lane"]) for row in c.fetchall()]

    def failing_since(self, endpoint_id: str, at: datetime) -> datetime:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "INSERT INTO {health} (endpoint_id, failing_since) VALUES (?, ?)"
                    " ON CONFLICT (endpoint_id) DO UPDATE SET failing_since ="
                    " COALESCE({health}.failing_since, excluded.failing_since)"
                    " RETURNING failing_since"
                ),
                (endpoint_id, at.timestamp()),
            )
            row = c.fetchone()
        since = _time(float(row["failing_since"]))
        assert since is not None
        return since

    def pause(self, endpoint_id: str, paused: bool) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql(
                    "INSERT INTO {health} (endpoint_id, paused) VALUES (?, ?)"
                    " ON CONFLICT (endpoint_id) DO UPDATE SET paused = excluded.paused,"
                    " failing_since = NULL"
                ),
                (endpoint_id, 1 if paused else 0),
            )

    def discard(self, endpoint_id: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                self._sql("DELETE FROM {table} WHERE endpoint_id = ? AND status IN (?, ?)"),
                (endpoint_id, QUEUED, SENDING),
            )
            c.execute(self._sql("DELETE FROM {health} WHERE endpoint_id = ?"), (endpoint_id,))
            c.execute(self._sql("DELETE FROM {replays} WHERE endpoint_id = ?"), (endpoint_id,))

    def of_endpoint(self, endpoint_id: str, limit: int) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                self._sql(
                    "SELECT id, account_id, position, type, replay_id, status, attempts,"
                    " next_try_at, last_status, last_error, created_at, updated_at"
                    " FROM {table} WHERE endpoint_id = ? ORDER BY seq DESC LIMIT ?"
                ),
                (endpoint_id, limit),
            )
            rows = [dict(row) for row in c.fetchall()]
        for row in rows:
            waiting = row["status"] == QUEUED
            row["next_try_at"] = _time(row["next_try_at"]) if waiting else None
            row["created_at"] = _time(row["created_at"])
            row["updated_at"] = _time(row["updated_at"])
        return rows


class SqliteWebhookLedger(WebhookQueries, SQLiteTrackingRecorder):
    table = "webhook_deliveries"
    health = "webhook_endpoint_health"
    replays = "webhook_replays"
    marker = "?"

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            *_schema(
                self.table,
                self.health,
                self.replays,
                "seq INTEGER PRIMARY KEY AUTOINCREMENT",
                "REAL",
            ),
        ]


class PostgresWebhookLedger(WebhookQueries, PostgresTrackingRecorder):
    table = "tessera_webhook_deliveries"
    health = "tessera_webhook_endpoint_health"
    replays = "tessera_webhook_replays"
    marker = "%s"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.extend(
            SQL("{}").format(SQL(statement))  # type: ignore[arg-type, unused-ignore]
            for statement in _schema(
                self.table,
                self.health,
                self.replays,
                "seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                "double precision",
            )
        )
