"""The denylist of revoked sessions: in Redis when configured, else in the service's database."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import redis
from psycopg_pool import ConnectionPool

from application.event_log import Outage
from application.ports import AccessClaims, Unavailable


class SqliteRevocationList:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(
                "PRAGMA journal_mode=WAL;"
                "CREATE TABLE IF NOT EXISTS revoked_sessions ("
                " session_id TEXT PRIMARY KEY, until REAL NOT NULL);"
                "CREATE TABLE IF NOT EXISTS revoked_accounts ("
                " account_id TEXT PRIMARY KEY, cutoff REAL NOT NULL, kept_session TEXT,"
                " until REAL NOT NULL);"
            )

    def revoke_session(self, session_id: UUID, ttl: timedelta) -> None:
        until = datetime.now(UTC) + ttl
        with self._lock:
            self._db.execute(
                "INSERT INTO revoked_sessions VALUES (?, ?) ON CONFLICT (session_id) "
                "DO UPDATE SET until = max(until, excluded.until)",
                (str(session_id), until.timestamp()),
            )

    def revoke_sessions_before(
        self, account_id: UUID, cutoff: datetime, ttl: timedelta, keep: UUID | None = None
    ) -> None:
        until = datetime.now(UTC) + ttl
        with self._lock:
            self._db.execute(
                "INSERT INTO revoked_accounts VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE"
                " SET cutoff = excluded.cutoff, kept_session = excluded.kept_session,"
                " until = max(until, excluded.until)",
                (str(account_id), cutoff.timestamp(), keep and str(keep), until.timestamp()),
            )

    def is_revoked(self, claims: AccessClaims) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE session_id = ?)"
                " OR EXISTS (SELECT 1 FROM revoked_accounts WHERE account_id = ? AND cutoff >= ?"
                "  AND kept_session IS NOT ?)",
                (
                    str(claims.session_id),
                    str(claims.account_id),
                    claims.issued_at,
                    str(claims.session_id),
                ),
            ).fetchone()
        return bool(row[0])

    def forget_expired(self, now: datetime) -> None:
        with self._lock:
            self._db.execute("DELETE FROM revoked_sessions WHERE until < ?", (now.timestamp(),))
            self._db.execute("DELETE FROM revoked_accounts WHERE until < ?", (now.timestamp(),))

    def close(self) -> None:
        self._db.close()


class PostgresRevocationList:
    """Fails closed like the Redis one: a database that does not answer is Unavailable (503).
    It is the event store's database, so it shares the event store's Outage: once either has
    found the database gone, both refuse at once instead of waiting for a connection."""

    def __init__(self, pool: ConnectionPool, outage: Outage | None = None) -> None:
        self._pool = pool
        self._outage = outage
        with self._connection() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tessera_revoked_sessions ("
                " session_id uuid PRIMARY KEY, until double precision NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tessera_revoked_accounts ("
                " account_id uuid PRIMARY KEY, cutoff double precision NOT NULL,"
                " kept_session uuid, until double precision NOT NULL)"
            )

    def revoke_session(self, session_id: UUID, ttl: timedelta) -> None:
        until = datetime.now(UTC) + ttl
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO tessera_revoked_sessions VALUES (%s, %s) ON CONFLICT (session_id) "
                "DO UPDATE SET until = greatest(tessera_revoked_sessions.until, excluded.until)",
                (session_id, until.timestamp()),
            )

    def revoke_sessions_before(
        self, account_id: UUID, cutoff: datetime, ttl: timedelta, keep: UUID | None = None
    ) -> None:
        until = datetime.now(UTC) + ttl
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO tessera_revoked_accounts VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (account_id) DO UPDATE SET "
                "cutoff = excluded.cutoff, kept_session = excluded.kept_session, "
                "until = greatest(tessera_revoked_accounts.until, excluded.until)",
                (account_id, cutoff.timestamp(), keep, until.timestamp()),
            )

    def is_revoked(self, claims: AccessClaims) -> bool:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM tessera_revoked_sessions WHERE session_id = %s)"
                " OR EXISTS (SELECT 1 FROM tessera_revoked_accounts"
                "  WHERE account_id = %s AND cutoff >= %s AND kept_session IS DISTINCT FROM %s)",
                (claims.session_id, claims.account_id, claims.issued_at, claims.session_id),
            ).fetchone()
        return bool(row and row[0])

    def forget_expired(self, now: datetime) -> None:
        with self._connection() as conn:
            conn.execute(
                "DELETE FROM tessera_revoked_sessions WHERE until < %s", (now.timestamp(),)
            )
            conn.execute(
                "DELETE FROM tessera_revoked_accounts WHERE until < %s", (now.timestamp(),)
            )

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._outage is not None:
            self._outage.check()
        acquired = False
        try:
            with self._pool.connection() as conn:
                acquired = True
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            # Only a connection that cannot be had says the database is gone (see fail_fast).
            if self._outage is not None and not acquired:
                self._outage.failed(error)
            raise Unavailable("database") from error

    def close(self) -> None:
        self._pool.close()


def revocation_pool(conninfo: str) -> ConnectionPool:
    """Connections are checked before use, so those a database restart broke are replaced
    rather than handed out; a wait for one is short, so an outage is a quick 503."""
    return ConnectionPool(
        conninfo,
        min_size=1,
        max_size=10,
        timeout=2.0,
        check=ConnectionPool.check_connection,
        open=True,
    )


class RedisRevocationList:
    """Revocations shared by every API process at once. Fails closed: if Redis does not answer,
    no token is accepted (Unavailable, a 503), because a revoked token must never pass."""

    def __init__(self, client: redis.Redis, prefix: str = "tessera:revoked:") -> None:
        self._client = client
        self._prefix = prefix

    def _ttl_ms(self, ttl: timedelta) -> int:
        return max(1, int(ttl.total_seconds() * 1000))

    def revoke_session(self, session_id: UUID, ttl: timedelta) -> None:
        try:
            self._client.set(f"{self._prefix}session:{session_id}", "1", px=self._ttl_ms(ttl))
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    def revoke_sessions_before(
        self, account_id: UUID, cutoff: datetime, ttl: timedelta, keep: UUID | None = None
    ) -> None:
        value = f"{cutoff.timestamp()!r}|{keep or ''}"
        try:
            self._client.set(f"{self._prefix}account:{account_id}", value, px=self._ttl_ms(ttl))
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    def is_revoked(self, claims: AccessClaims) -> bool:
        try:
            session, account = self._client.mget(
                f"{self._prefix}session:{claims.session_id}",
                f"{self._prefix}account:{claims.account_id}",
            )
        except redis.RedisError as error:
            raise Unavailable("redis") from error
        if session is not None:
            return True
        if account is None:
            return False
        text = account.decode() if isinstance(account, bytes) else str(account)
        cutoff, _, kept = text.partition("|")
        return float(cutoff) >= claims.issued_at and kept != str(claims.session_id)

    def close(self) -> None:
        self._client.close()
