"""The read models' tables, on SQLite or PostgreSQL, each beside its projection's tracking record.

The same statements serve both stores: ids are text, times Unix seconds, flags integers.
Statements are composed from table and column names written in this code and the projections',
never from input; every value is a bound parameter.
"""

# ruff: noqa: S608

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from psycopg.sql import SQL

from application.read_side.read_batch import Forget, Row

log = logging.getLogger(__name__)

# How often, and after how long a pause (growing each time), a scrub asks again for a checkpoint
# that readers keep busy, past the connection's own busy wait: about 12 s more in all.
CHECKPOINT_TRIES = 15
CHECKPOINT_PAUSE = 0.1

# Each table: its columns (the first is the key) and the indexes the queries use. No column
# holds a person's value in plain text: `sealed_*` ones hold it sealed under the person's data
# key, `*_fingerprint` ones a keyed hash of it, and an audit row's details seal theirs
# (application.read_side.read_seals). A store that finds a table of another shape (one from an earlier
# release) drops the read model and rebuilds it from the log (ReadStoreStatements._create_table).
TABLES: dict[str, tuple[list[str], list[str]]] = {
    "accounts": (
        [
            "id TEXT PRIMARY KEY",
            "sealed_email TEXT NOT NULL",
            "sealed_username TEXT NOT NULL",
            "sealed_display_name TEXT NOT NULL",
            "email_fingerprint TEXT NOT NULL",
            "username_fingerprint TEXT NOT NULL",
            "email_verified INTEGER NOT NULL",
            "roles TEXT NOT NULL",
            "disabled INTEGER NOT NULL",
            "locked INTEGER NOT NULL",
            "locked_until DOUBLE PRECISION",
            "mfa_enabled INTEGER NOT NULL",
            "created_at DOUBLE PRECISION NOT NULL",
            "updated_at DOUBLE PRECISION NOT NULL",
            "last_login_at DOUBLE PRECISION",
            "version INTEGER NOT NULL",
        ],
        ["email_fingerprint", "username_fingerprint", "created_at, id"],
    ),
    "sessions": (
        [
            "id TEXT PRIMARY KEY",
            "account_id TEXT NOT NULL",
            "started_at DOUBLE PRECISION NOT NULL",
            "last_used_at DOUBLE PRECISION NOT NULL",
            "expires_at DOUBLE PRECISION NOT NULL",
            "sealed_ip TEXT NOT NULL",
            "sealed_user_agent TEXT NOT NULL",
            "revoked_at DOUBLE PRECISION",
            "revocation_reason TEXT",
        ],
        ["account_id, started_at"],
    ),
    "audit_log": (
        [
            "position BIGINT PRIMARY KEY",
            "time DOUBLE PRECISION NOT NULL",
            "type TEXT NOT NULL",
            "aggregate TEXT NOT NULL",
            "aggregate_id TEXT NOT NULL",
            "version INTEGER NOT NULL",
            "account_id TEXT",
            "session_id TEXT",
            "sealed_ip TEXT NOT NULL",
            "sealed_user_agent TEXT NOT NULL",
            "outcome TEXT NOT NULL",
            "details TEXT NOT NULL",
        ],
        ["account_id, position", "type, position", "time"],
    ),
    "audit_sessions": (["id TEXT PRIMARY KEY", "account_id TEXT NOT NULL"], []),
}

FINGERPRINT_COLUMNS = frozenset({"email_fingerprint", "username_fingerprint"})

# Tables whose rows are written once and never changed: a rebuild appends them (PostgreSQL:
# COPY) instead of upserting, into tables it emptied.
APPEND_ONLY = frozenset({"audit_log", "audit_sessions"})

# Each table's column types, for PostgreSQL's typed arrays.
_COLUMN_TYPES = {
    table: {
        spec.split()[0]: spec.split(maxsplit=1)[1]
        .replace(" PRIMARY KEY", "")
        .replace(" NOT NULL", "")
        for spec in columns
    }
    for table, (columns, _) in TABLES.items()
}
_KEYS_PER_QUERY = 500  # under SQLite's limit of bound parameters (32,766)


def _indexes(prefix: str, tables: Sequence[str]) -> list[tuple[str, str]]:
    """Each secondary index's name and the statement that creates it (if missing)."""
    found = []
    for table in tables:
        for columns_of_index in TABLES[table][1]:
            name = f"{prefix}{table}_{columns_of_index.replace(', ', '_')}"
            found.append(
                (name, f"CREATE INDEX IF NOT EXISTS {name} ON {prefix}{table} ({columns_of_index})")
            )
    return found


def _schema(prefix: str, tables: Sequence[str]) -> list[str]:
    """Tables, then their indexes: run at every start of a store, so indexes a rebuild dropped
    and never got to create again (it was killed) are back before anything queries them."""
    statements = [
        f"CREATE TABLE IF NOT EXISTS {prefix}{table} ({', '.join(TABLES[table][0])})"
        for table in tables
    ]
    return statements + [create for _, create in _indexes(prefix, tables)]


class ReadStoreStatements:
    """The statements, written once. Each store's class names its table prefix, the driver's
    parameter marker, and its tracking table."""

    tables: tuple[str, ...]
    prefix: str
    marker: str
    tracking_table: str
    datastore: Any
    _insert_tracking: Any  # the tracking recorder's, which this class is mixed into

    def _table(self, table: str) -> str:
        if table not in self.tables:
            raise ValueError(f"not a table of this read model: {table}")
        return f"{self.prefix}{table}"

    def _where(self, where: Row) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for column, value in where.items():
            if value is None:
                clauses.append(f"{column} IS NULL")
            else:
                clauses.append(f"{column} = {self.marker}")
                params.append(value)
        return " AND ".join(clauses) or "TRUE", params

    _appending: frozenset[str] = frozenset()
    _rebuilding = False

    @contextmanager
    def appending(self) -> Iterator[None]:
        """Within it, rows of the append-only tables are appended rather than upserted: for a
        rebuild, which emptied them and holds the lease, so nothing else writes meanwhile. A row
        written twice fails the batch (a unique key) rather than passing unnoticed."""
        self._appending = APPEND_ONLY.intersection(self.tables)
        self._rebuilding = True
        try:
            yield
        finally:
            del self._appending, self._rebuilding

    def key(self, table: str) -> str:
        return TABLES[table][0][0].split()[0]

    table_migration_identifier: str  # the tracking recorder's row of its own, never reset
    _dropped_older_shape = False

    def _create_table(self, c: Any) -> None:
        """Before the tables are created (where missing): a read model whose tables have
        other columns than this release's (an earlier release's, with the person's values in
        plain text) is dropped with its position, so the projector rebuilds it from the first
        event. Dropping a table removes its files; copies made before (old WAL segments, base
        backups) keep what it held: docs/operate/read-models.md says how to be rid of them."""
        older = [
            table
            for table in self.tables
            if (found := self._columns(c, table))
            and found != [spec.split()[0] for spec in TABLES[table][0]]
        ]
        if older:
            for table in self.tables:
                c.execute(f"DROP TABLE IF EXISTS {self._table(table)}")
        super()._create_table(c)  # type: ignore[misc]
        if older:
            c.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name <> {self.marker}",
                [self.table_migration_identifier],
            )
            self._dropped_older_shape = True
            log.warning(
                "the read model of %s had an older shape (%s): dropped, and rebuilt from the "
                "event log by its projector",
                ", ".join(self.tables),
                ", ".join(older),
            )

    def _columns(self, cursor: Any, table: str) -> list[str]:
        """The table's columns in their order; none if it does not exist."""
        raise NotImplementedError

    def write(
        self, rows: Mapping[str, Sequence[Row]], tracking: Tracking, forgets: Sequence[Forget] = ()
    ) -> None:
        with self.datastore.transaction(commit=True) as c:
            for table, changed in rows.items():
                shapes: dict[tuple[str, ...], list[Row]] = {}
                for row in changed:
                    shapes.setdefault(tuple(row), []).append(row)
                write = self._append if table in self._appending else self._upsert
                for columns, alike in shapes.items():
                    write(c, table, columns, alike)
            for forget in forgets:
                self._forget(c, forget)
            self._insert_tracking(c, tracking)
        if (forgets or self._scrub_owed) and not self._rebuilding:
            self._scrub()  # a rebuild writes into tables it emptied: nothing old to scrub

    def _forget(self, cursor: Any, forget: Forget) -> None:
        table = self._table(forget.table)
        clause, params = self._where(forget.where)
        if forget.rewrite is None:
            cursor.execute(f"DELETE FROM {table} WHERE {clause}", params)
            return
        cursor.execute(f"SELECT * FROM {table} WHERE {clause}", params)
        rewritten = [forget.rewrite(dict(row)) for row in cursor.fetchall()]
        if not rewritten:
            return
        key = self.key(forget.table)
        columns = [column for column in rewritten[0] if column != key]
        sets = ", ".join(f"{column} = {self.marker}" for column in columns)
        cursor.executemany(
            f"UPDATE {table} SET {sets} WHERE {key} = {self.marker}",
            [tuple(row[column] for column in [*columns, key]) for row in rewritten],
        )

    _scrub_owed = False  # a scrub that readers kept from finishing, done at the next write

    def _scrub(self) -> None:
        """Leaves no copy of deleted or overwritten values in the store's files."""

    def _upsert_tail(self, table: str, columns: Sequence[str]) -> str:
        updates = ", ".join(f"{col} = excluded.{col}" for col in columns[1:])
        return f" ON CONFLICT ({columns[0]}) DO " + (
            f"UPDATE SET {updates}" if updates else "NOTHING"
        )

    def create_indexes(self) -> None:
        """The secondary indexes reset(drop_indexes=True) dropped; those present stay as
        they are."""
        with self.datastore.transaction(commit=True) as c:
            for _, create in _indexes(self.prefix, self.tables):
                c.execute(create)

    def index_definitions(self) -> dict[str, str]:
        """Every index of this read model's tables, by name: its definition as the database
        holds it."""
        raise NotImplementedError

    def _empty(self, table: str) -> str:
        return f"DELETE FROM {self._table(table)}"

    def _upsert(self, cursor: Any, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        """Rows with the same columns, in as few round trips as the driver allows."""
        raise NotImplementedError

    def _append(self, cursor: Any, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        """New rows only (a rebuild's, of an append-only table)."""
        raise NotImplementedError

    def rows_keyed(self, table: str, keys: Collection[Any]) -> list[Row]:
        raise NotImplementedError

    def rows(self, table: str, where: Row) -> list[Row]:
        clause, params = self._where(where)
        return self.select(f"SELECT * FROM {self._table(table)} WHERE {clause}", params)

    def select(self, query: str, params: Sequence[Any]) -> list[Row]:
        """Runs a query written with `?` markers and `{name}` for this read model's tables."""
        for table in self.tables:
            query = query.replace("{" + table + "}", self._table(table))
        query = query.replace("?", self.marker)
        with self.datastore.transaction(commit=False) as c:
            c.execute(query, list(params))
            return [dict(row) for row in c.fetchall()]

    def reset(self, application_name: str, *, drop_indexes: bool = False) -> None:
        """Empties the tables and forgets the position reached, in one transaction.

        `drop_indexes`, for a rebuild only: the secondary indexes go too, so the replay writes
        bare rows and create_indexes() then builds each index in one sort, rather than every
        row updating every index (two thirds of a write to the audit log). The live projector
        never runs without them. Should the rebuild die before create_indexes(), the next start
        of the store (its create statements) or the next rebuild creates them.
        """
        with self.datastore.transaction(commit=True) as c:
            if drop_indexes:
                for name, _ in _indexes(self.prefix, self.tables):
                    c.execute(f"DROP INDEX IF EXISTS {name}")
            for table in self.tables:
                c.execute(self._empty(table))
            c.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name = {self.marker}",
                [application_name],
            )


class SqliteReadStore(ReadStoreStatements, SQLiteTrackingRecorder):
    """Each SQLite read model has a file of its own (the library keeps one tracking table per
    file), so its writes never wait on the event store's."""

    prefix = ""
    marker = "?"
    tracking_table = "tracking"

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *_schema("", self.tables)]

    def create_table(self) -> None:
        super().create_table()
        if self._dropped_older_shape:
            self._scrub()  # the dropped tables' pages are free pages now, their values intact

    def _columns(self, cursor: Any, table: str) -> list[str]:
        cursor.execute(f"PRAGMA table_info({self._table(table)})")
        return [str(row[1]) for row in cursor.fetchall()]

    def _scrub(self) -> None:
        # A deleted or overwritten row stays in the file's free space, and older versions of
        # its pages in the write-ahead log, until overwritten: VACUUM writes the file afresh
        # and a truncating checkpoint empties the log. The values are sealed under a key the
        # erasure destroyed, so this only leaves no noise behind either. (PostgreSQL keeps old
        # row versions in its data files and WAL too, sealed alike: docs/operate/read-models.md.)
        with self.datastore.get_connection(commit=True) as conn:
            cursor = conn.cursor()
            cursor.execute("VACUUM")
            # A reader in the middle of a transaction keeps the log from being emptied: past
            # the connection's busy wait the checkpoint answers busy, and is asked again until
            # the readers have moved on.
            for attempt in range(CHECKPOINT_TRIES):
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                if not cursor.fetchone()[0]:
                    self._scrub_owed = False
                    return
                time.sleep(CHECKPOINT_PAUSE * (attempt + 1))
        self._scrub_owed = True
        log.error(
            "readers kept the write-ahead log of %s from being emptied: erased values stay in "
            "it until the next write of this read model scrubs it again",
            ", ".join(self.tables),
        )

    def index_definitions(self) -> dict[str, str]:
        names = ", ".join("?" * len(self.tables))
        found = self.select(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
            f" AND tbl_name IN ({names}) ORDER BY name",
            self.tables,
        )
        return {row["name"]: row["sql"] or "" for row in found}

    def _upsert(self, cursor: Any, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        self._insert(cursor, table, columns, rows, self._upsert_tail(table, columns))

    def _append(self, cursor: Any, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        self._insert(cursor, table, columns, rows, "")

    def _insert(
        self, cursor: Any, table: str, columns: Sequence[str], rows: list[Row], tail: str
    ) -> None:
        cursor.executemany(
            f"INSERT INTO {self._table(table)} ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))})" + tail,
            [tuple(row.values()) for row in rows],
        )

    def rows_keyed(self, table: str, keys: Collection[Any]) -> list[Row]:
        found: list[Row] = []
        keys = list(keys)
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start : start + _KEYS_PER_QUERY]
            found += self.select(
                f"SELECT * FROM {self._table(table)} WHERE {self.key(table)}"
                f" IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
        return found


class PostgresReadStore(ReadStoreStatements, PostgresTrackingRecorder):
    prefix = "tessera_"
    marker = "%s"

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.extend(
            SQL("{}").format(SQL(statement))  # type: ignore[arg-type, unused-ignore]
            for statement in _schema(self.prefix, self.tables)
        )

    @property
    def tracking_table(self) -> str:  # type: ignore[override]
        return self.tracking_table_name

    def _columns(self, cursor: Any, table: str) -> list[str]:
        cursor.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [self._table(table)],
        )
        return [str(row["attname"]) for row in cursor.fetchall()]

    def index_definitions(self) -> dict[str, str]:
        found = self.select(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = ANY(%s) ORDER BY indexname",
            [[self._table(table) for table in self.tables]],
        )
        return {row["indexname"]: row["indexdef"] for row in found}

    def _empty(self, table: str) -> str:
        # Not DELETE: a rebuild would otherwise write beside a million dead rows, which a
        # vacuum reclaims only later. TRUNCATE is transactional in PostgreSQL.
        return f"TRUNCATE {self._table(table)}"

    def _upsert(self, cursor: Any, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        # One statement a table, whatever the number of rows: each column's values as one array
        # parameter, unnested into rows. A short statement, so psycopg parses it once.
        types = _COLUMN_TYPES[table]
        arrays = ", ".join(f"%b::{types[column]}[]" for column in columns)
        cursor.execute(
            f"INSERT INTO {self._table(table)} ({', '.join(columns)})"
            f" SELECT * FROM unnest({arrays})" + self._upsert_tail(table, columns),
            [[row[column] for row in rows] for column in columns],
        )

    def _append(self, cursor: Any, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        # COPY: no conflict to check for, and psycopg's C code writes the rows, where the
        # upsert's arrays are built value by value in Python.
        with cursor.copy(f"COPY {self._table(table)} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row.values()))

    def rows_keyed(self, table: str, keys: Collection[Any]) -> list[Row]:
        key = self.key(table)
        kind = _COLUMN_TYPES[table][key]
        return self.select(
            f"SELECT * FROM {self._table(table)} WHERE {key} = ANY(%s::{kind}[])", [list(keys)]
        )


class AccountQueries(ReadStoreStatements):
    tables = ("accounts",)

    def search(
        self, lookup: tuple[str, list[str]] | None, after: tuple[float, str] | None, limit: int
    ) -> list[Row]:
        """Accounts whose column `lookup[0]` (a fingerprint's) holds one of `lookup[1]`, in the
        order they registered, after the one registered at `after` (its created_at and id)."""
        clauses: list[str] = []
        params: list[Any] = []
        if lookup is not None:
            column, values = lookup
            if column not in FINGERPRINT_COLUMNS or not values:
                raise ValueError(f"not a look-up of the accounts: {column}")
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params += values
        if after is not None:
            clauses.append("(created_at > ? OR (created_at = ? AND id > ?))")
            params += [after[0], after[0], after[1]]
        return self.select(
            f"SELECT * FROM {{accounts}} WHERE {' AND '.join(clauses) or 'TRUE'}"
            " ORDER BY created_at, id LIMIT ?",
            [*params, limit],
        )

    def holding(self, role: str) -> list[str]:
        """The ids of the accounts that hold `role` (a rare question: the admins to tell)."""
        rows = self.select(
            "SELECT id FROM {accounts} WHERE ',' || roles || ',' LIKE ?", [f"%,{role},%"]
        )
        return [str(row["id"]) for row in rows]


class SessionQueries(ReadStoreStatements):
    tables = ("sessions",)

    def live_of(self, account_id: str, at: float) -> list[Row]:
        return self.select(
            "SELECT * FROM {sessions} WHERE account_id = ? AND revoked_at IS NULL"
            " AND expires_at > ? ORDER BY started_at DESC",
            [account_id, at],
        )

    def all_of(self, account_id: str) -> list[Row]:
        return self.select(
            "SELECT * FROM {sessions} WHERE account_id = ? ORDER BY started_at, id", [account_id]
        )


class AuditQueries(ReadStoreStatements):
    tables = ("audit_log", "audit_sessions")

    def page(self, where: Row, after: int | None, limit: int, newest_first: bool) -> list[Row]:
        """Entries matching `where` (account_id, type: equal; since, until: time range), in
        store order or newest first, from the cursor `after` (a position) on."""
        clauses, params = [], []
        for column in ("account_id", "type"):
            if where.get(column) is not None:
                clauses.append(f"{column} = ?")
                params.append(where[column])
        if where.get("since") is not None:
            clauses.append("time >= ?")
            params.append(where["since"])
        if where.get("until") is not None:
            clauses.append("time < ?")
            params.append(where["until"])
        if after is not None:
            clauses.append("position < ?" if newest_first else "position > ?")
            params.append(after)
        order = "DESC" if newest_first else "ASC"
        return self.select(
            f"SELECT * FROM {{audit_log}} WHERE {' AND '.join(clauses) or 'TRUE'}"
            f" ORDER BY position {order} LIMIT ?",
            [*params, limit],
        )


class SqliteAccounts(AccountQueries, SqliteReadStore):
    pass


class PostgresAccounts(AccountQueries, PostgresReadStore):
    pass


class SqliteSessions(SessionQueries, SqliteReadStore):
    pass


class PostgresSessions(SessionQueries, PostgresReadStore):
    pass


class SqliteAuditLog(AuditQueries, SqliteReadStore):
    pass


class PostgresAuditLog(AuditQueries, PostgresReadStore):
    pass
