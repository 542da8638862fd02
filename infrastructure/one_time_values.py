"""Where one-time values wait to be taken (WebAuthn challenges, sign-in states and codes,
authorization codes, pending authorization requests): Redis when configured (shared by every
API process), else a table in the service's database. Each is taken at most once: GETDEL in
Redis, DELETE ... RETURNING in SQL, so two callers racing for one value never both get it.

The stored names (the passkey_challenges table and file, the tessera:passkey-challenge: key
prefix) are those of when the store held passkey challenges alone: kept, so that a value put
before an upgrade is still found after it."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg_pool import ConnectionPool
from webauthn.helpers import bytes_to_base64url

from application.persistence.event_log import Outage
from application.ports import Unavailable
from infrastructure.local_file import LocalFile
from infrastructure.pg_indexes import build_concurrently
from infrastructure.revocation import guarded_connection


def _key(key: bytes) -> str:
    return bytes_to_base64url(key)


def _split(value: str, at: datetime) -> str | None:
    """A stored "<expires at, unix seconds> <value>", judged by the service's clock (not the
    store's), so that expiry is the same rule in every store."""
    expires_at, _, taken = value.partition(" ")
    return taken if at.timestamp() < float(expires_at) else None


class SqliteOneTimeValues:
    def __init__(self, path: Path) -> None:
        self._file = LocalFile(
            path,
            "CREATE TABLE IF NOT EXISTS passkey_challenges ("
            " challenge TEXT PRIMARY KEY, ceremony TEXT NOT NULL, expires_at REAL NOT NULL);"
            # Every put deletes the expired values: by this index, not by reading them all.
            "CREATE INDEX IF NOT EXISTS passkey_challenges_expires_at"
            " ON passkey_challenges (expires_at);",
        )

    def put(self, key: bytes, value: str, expires_at: datetime) -> None:
        with self._file.connection() as db:
            # Expired ones go as new ones come: the table holds only about the last day's.
            db.execute(
                "DELETE FROM passkey_challenges WHERE expires_at < ?",
                (expires_at.timestamp() - 86400,),
            )
            db.execute(
                "INSERT INTO passkey_challenges VALUES (?, ?, ?)",
                (_key(key), value, expires_at.timestamp()),
            )

    def claim_then_take(
        self, claim: bytes, value: str, expires_at: datetime, key: bytes, at: datetime
    ) -> tuple[bool, str | None]:
        with self._file.transaction() as db:
            claimed = (
                db.execute(
                    "INSERT INTO passkey_challenges VALUES (?, ?, ?)"
                    " ON CONFLICT (challenge) DO NOTHING RETURNING 1",
                    (_key(claim), value, expires_at.timestamp()),
                ).fetchone()
                is not None
            )
            return claimed, self._take(db, key if claimed else claim, at)

    def take(self, key: bytes, at: datetime) -> str | None:
        with self._file.connection() as db:
            return self._take(db, key, at)

    @staticmethod
    def _take(db: sqlite3.Connection, key: bytes, at: datetime) -> str | None:
        row = db.execute(
            "DELETE FROM passkey_challenges WHERE challenge = ? RETURNING ceremony, expires_at",
            (_key(key),),
        ).fetchone()
        if row is None:
            return None
        return _split(f"{row[1]} {row[0]}", at)

    def close(self) -> None:
        self._file.close()


class PostgresOneTimeValues:
    def __init__(self, pool: ConnectionPool, outage: Outage | None = None) -> None:
        self._pool = pool
        self._outage = outage
        with self._connection() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tessera_passkey_challenges ("
                " challenge text PRIMARY KEY, ceremony text NOT NULL,"
                " expires_at double precision NOT NULL)"
            )
        with self._connection() as conn:
            # Every put deletes the expired values: by this index, not by reading them all
            # (every authorization code is one).
            build_concurrently(
                conn,
                "tessera_passkey_challenges_expires_at",
                "tessera_passkey_challenges",
                "expires_at",
            )

    def put(self, key: bytes, value: str, expires_at: datetime) -> None:
        with self._connection() as conn:
            conn.execute(
                "DELETE FROM tessera_passkey_challenges WHERE expires_at < %s",
                (expires_at.timestamp() - 86400,),
            )
            conn.execute(
                "INSERT INTO tessera_passkey_challenges VALUES (%s, %s, %s)",
                (_key(key), value, expires_at.timestamp()),
            )

    def claim_then_take(
        self, claim: bytes, value: str, expires_at: datetime, key: bytes, at: datetime
    ) -> tuple[bool, str | None]:
        # Two statements: each sees what committed before it began (read committed), so the
        # loser of a race, whose insert waited for the winner's commit, finds that claim.
        with self._connection() as conn:
            claimed = (
                conn.execute(
                    "INSERT INTO tessera_passkey_challenges VALUES (%s, %s, %s)"
                    " ON CONFLICT (challenge) DO NOTHING RETURNING 1",
                    (_key(claim), value, expires_at.timestamp()),
                ).fetchone()
                is not None
            )
            return claimed, self._take(conn, key if claimed else claim, at)

    def take(self, key: bytes, at: datetime) -> str | None:
        with self._connection() as conn:
            return self._take(conn, key, at)

    @staticmethod
    def _take(conn: psycopg.Connection[Any], key: bytes, at: datetime) -> str | None:
        row = conn.execute(
            "DELETE FROM tessera_passkey_challenges WHERE challenge = %s"
            " RETURNING ceremony, expires_at",
            (_key(key),),
        ).fetchone()
        if row is None:
            return None
        return _split(f"{row[1]} {row[0]}", at)

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return guarded_connection(self._pool, self._outage)

    def close(self) -> None:
        self._pool.close()


# KEYS: the claim, the key to take if this call puts the claim. ARGV: the claim's stored value,
# its time to live in seconds. Returns {1 if it put the claim, what it took}.
_CLAIM_THEN_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then
  return {1, redis.call('GETDEL', KEYS[2])}
end
return {0, redis.call('GETDEL', KEYS[1])}
"""


class RedisOneTimeValues:
    """Keys expire in Redis a little after the value does (the clock that judges expiry is the
    service's); a Redis that does not answer is a 503, never a value let through."""

    def __init__(self, client: redis.Redis, prefix: str = "tessera:passkey-challenge:") -> None:
        self._client = client
        self._prefix = prefix
        self._claim_then_take = client.register_script(_CLAIM_THEN_TAKE)

    def put(self, key: bytes, value: str, expires_at: datetime) -> None:
        stored = f"{expires_at.timestamp()} {value}"
        try:
            # The service's clock decides expiry (see _split); Redis only cleans up, a minute
            # after the value's time by its own clock.
            ttl = max(int(expires_at.timestamp() - time.time()), 0) + 60
            self._client.set(self._prefix + _key(key), stored, ex=ttl)
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    def claim_then_take(
        self, claim: bytes, value: str, expires_at: datetime, key: bytes, at: datetime
    ) -> tuple[bool, str | None]:
        stored = f"{expires_at.timestamp()} {value}"
        keys = [self._prefix + _key(claim), self._prefix + _key(key)]
        try:
            ttl = max(int(expires_at.timestamp() - time.time()), 0) + 60
            claimed, taken = self._claim_then_take(keys=keys, args=[stored, ttl])
        except redis.RedisError as error:
            raise Unavailable("redis") from error
        return bool(claimed), _judged(taken, at)

    def take(self, key: bytes, at: datetime) -> str | None:
        try:
            stored = self._client.getdel(self._prefix + _key(key))
        except redis.RedisError as error:
            raise Unavailable("redis") from error
        return _judged(stored, at)

    def close(self) -> None:
        pass  # the client is the container's


def _judged(stored: Any, at: datetime) -> str | None:
    if stored is None:
        return None
    return _split(stored.decode() if isinstance(stored, bytes) else str(stored), at)
