"""Shared state every API process consults on each authenticated request: the denylist of
revoked sessions, and each account's change mark and last written position. In Redis when
configured, else in the service's database."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import redis
import redis.asyncio
from psycopg_pool import ConnectionPool

from application.persistence.event_log import Outage
from application.ports import AccessClaims, Standing, Unavailable
from infrastructure.local_file import LocalFile
from infrastructure.pg_indexes import build_concurrently

# A "changing" mark outlives a process that died between its commit and its "changed" mark by
# this long; meanwhile every process reads the account from the event store.
CHANGING_TTL = timedelta(seconds=60)
# A version mark or written position unused this long is forgotten: a missing mark only costs
# one load from the event store, and positions matter only until the projections pass them.
MARK_TTL = timedelta(days=1)
# The purge keeps a row this long past its `until`: a token its row refuses can outlive it by
# the clock skew the verifier allows between processes (infrastructure/signing.py), and one
# minted by a refresh that raced the revocation (read its chain before the chain ended) expires
# a request's duration after the row. Minutes of margin cost only rows kept a little longer.
EXPIRY_GRACE = timedelta(minutes=5)


# Every table of the revocation list, each row deciding nothing once its `until` has passed:
# a revoked session's or cutoff's tokens have all expired, a mark past it is read as no mark,
# and a written position past it was passed by the projections long ago.
_TABLES = (
    "revoked_sessions",
    "revoked_accounts",
    "revoked_apps",
    "account_marks",
    "written_positions",
)

# The purge finds the expired rows of the tables that grow with every logout and revocation
# by index; the marks and positions are one row per account, rewritten by every save (an
# index on `until` would cost each save a write), so a pass reads them whole. PostgreSQL builds
# them CONCURRENTLY: a plain build would hold off every logout while it read a large table.
_EXPIRING = ("revoked_sessions", "revoked_accounts", "revoked_apps")
_EXPIRY_INDEXES = "".join(
    f"CREATE INDEX IF NOT EXISTS {table}_until ON {table} (until);" for table in _EXPIRING
)


# The embedded default's marks table; the refresh-token chains read it in the same file.
ACCOUNT_MARKS = (
    "CREATE TABLE IF NOT EXISTS account_marks ("
    " account_id TEXT PRIMARY KEY, mark TEXT NOT NULL, until REAL NOT NULL);"
)


def _changing_token() -> str:
    return f"changing:{uuid4().hex}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _now() -> float:
    return datetime.now(UTC).timestamp()


class SqliteRevocationList:
    """The embedded default's shared state: a file of its own beside the event store, which
    `tessera admin` in another process writes too. Reads never wait for writers (WAL)."""

    def __init__(self, path: Path) -> None:
        self._file = LocalFile(
            path,
            "CREATE TABLE IF NOT EXISTS revoked_sessions ("
            " session_id TEXT PRIMARY KEY, until REAL NOT NULL);"
            "CREATE TABLE IF NOT EXISTS revoked_accounts ("
            " account_id TEXT PRIMARY KEY, cutoff REAL NOT NULL, kept_session TEXT,"
            " until REAL NOT NULL);"
            "CREATE TABLE IF NOT EXISTS revoked_apps ("
            " account_id TEXT NOT NULL, client_id TEXT NOT NULL, cutoff REAL NOT NULL,"
            " until REAL NOT NULL, PRIMARY KEY (account_id, client_id));"
            + ACCOUNT_MARKS
            + "CREATE TABLE IF NOT EXISTS written_positions ("
            " principal TEXT PRIMARY KEY, position INTEGER NOT NULL, until REAL NOT NULL);"
            + _EXPIRY_INDEXES,
        )

    def revoke_session(self, session_id: UUID, ttl: timedelta) -> None:
        until = datetime.now(UTC) + ttl
        with self._file.connection() as db:
            db.execute(
                "INSERT INTO revoked_sessions VALUES (?, ?) ON CONFLICT (session_id) "
                "DO UPDATE SET until = max(until, excluded.until)",
                (str(session_id), until.timestamp()),
            )

    def revoke_sessions_before(
        self, account_id: UUID, cutoff: datetime, ttl: timedelta, keep: UUID | None = None
    ) -> None:
        until = datetime.now(UTC) + ttl
        with self._file.connection() as db:
            db.execute(
                "INSERT INTO revoked_accounts VALUES (?, ?, ?, ?) ON CONFLICT (account_id) DO UPDATE"
                " SET cutoff = excluded.cutoff, kept_session = excluded.kept_session,"
                " until = max(until, excluded.until)",
                (str(account_id), cutoff.timestamp(), keep and str(keep), until.timestamp()),
            )

    def revoke_app_sessions_before(
        self, account_id: UUID, client_id: str, cutoff: datetime, ttl: timedelta
    ) -> None:
        until = datetime.now(UTC) + ttl
        with self._file.connection() as db:
            db.execute(
                "INSERT INTO revoked_apps VALUES (?, ?, ?, ?) ON CONFLICT (account_id, client_id)"
                " DO UPDATE SET cutoff = max(cutoff, excluded.cutoff),"
                " until = max(until, excluded.until)",
                (str(account_id), client_id, cutoff.timestamp(), until.timestamp()),
            )

    def changing(self, account_ids: Sequence[UUID]) -> str:
        token = _changing_token()
        until = _now() + CHANGING_TTL.total_seconds()
        with self._file.connection() as db:
            db.executemany(
                "INSERT INTO account_marks VALUES (?, ?, ?) ON CONFLICT (account_id) DO UPDATE"
                " SET mark = excluded.mark, until = excluded.until",
                [(str(account_id), token, until) for account_id in account_ids],
            )
        return token

    def changed(self, token: str, versions: dict[UUID, int], written: dict[UUID, int]) -> None:
        now = _now()
        until = now + MARK_TTL.total_seconds()
        with self._file.transaction() as db:
            db.executemany(
                "INSERT INTO account_marks VALUES (?, ?, ?) ON CONFLICT (account_id) DO UPDATE"
                " SET mark = excluded.mark, until = excluded.until"
                " WHERE account_marks.mark = ? OR account_marks.until < ?"
                "  OR (account_marks.mark NOT LIKE 'changing:%'"
                "      AND CAST(account_marks.mark AS INTEGER) < ?)",
                [(str(a), str(v), until, token, now, v) for a, v in versions.items()],
            )
            db.executemany(
                "INSERT INTO written_positions VALUES (?, ?, ?) ON CONFLICT (principal)"
                " DO UPDATE SET position = max(position, excluded.position),"
                " until = excluded.until",
                [(str(p), position, until) for p, position in written.items()],
            )

    def settle(self, account_id: UUID, version: int) -> None:
        now = _now()
        with self._file.connection() as db:
            db.execute(
                "INSERT INTO account_marks VALUES (?, ?, ?) ON CONFLICT (account_id) DO UPDATE"
                " SET mark = excluded.mark, until = excluded.until WHERE account_marks.until < ?",
                (str(account_id), str(version), now + MARK_TTL.total_seconds(), now),
            )

    async def standing(self, claims: AccessClaims) -> Standing:
        # A local file read in WAL mode: microseconds, never blocked by a writer, so it runs on
        # the event loop rather than paying a thread hop.
        return self.standing_now(claims)

    def standing_now(self, claims: AccessClaims) -> Standing:
        now = _now()
        with self._file.connection() as db:
            row = db.execute(
                "SELECT EXISTS (SELECT 1 FROM revoked_accounts WHERE account_id = ? AND cutoff >= ?"
                "  AND kept_session IS NOT ?)"
                " OR EXISTS (SELECT 1 FROM revoked_apps WHERE account_id = ? AND client_id = ?"
                "  AND cutoff >= ?),"
                " (SELECT mark FROM account_marks WHERE account_id = ? AND until >= ?),"
                " (SELECT position FROM written_positions WHERE principal = ?),"
                " EXISTS (SELECT 1 FROM revoked_sessions WHERE session_id = ?)",
                (
                    str(claims.account_id),
                    claims.issued_at,
                    str(claims.session_id),
                    str(claims.account_id),
                    claims.client_id,
                    claims.issued_at,
                    str(claims.account_id),
                    now,
                    str(claims.account_id),
                    str(claims.session_id),
                ),
            ).fetchone()
        return _standing_of_row(row)

    def forget_expired(
        self, now: datetime, limit: int, tables: Collection[str] | None = None
    ) -> dict[str, int]:
        """Deletes up to `limit` rows of each table (of `tables`, when given) whose `until`
        passed more than EXPIRY_GRACE before `now` (each decides nothing any more: see
        ExpiredState); returns how many it deleted from each table it passed."""
        before = (now - EXPIRY_GRACE).timestamp()
        deleted: dict[str, int] = {}
        for table in _TABLES if tables is None else [t for t in _TABLES if t in tables]:
            with self._file.connection() as db:  # a short write each, so requests wait little
                deleted[table] = db.execute(
                    f"DELETE FROM {table} WHERE until < ? AND rowid IN"  # noqa: S608
                    f" (SELECT rowid FROM {table} WHERE until < ? LIMIT ?)",
                    (before, before, limit),
                ).rowcount
        return deleted

    def close(self) -> None:
        self._file.close()


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
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tessera_revoked_apps ("
                " account_id uuid NOT NULL, client_id text NOT NULL,"
                " cutoff double precision NOT NULL, until double precision NOT NULL,"
                " PRIMARY KEY (account_id, client_id))"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tessera_account_marks ("
                " account_id uuid PRIMARY KEY, mark text NOT NULL,"
                " until double precision NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tessera_written_positions ("
                " principal uuid PRIMARY KEY, position bigint NOT NULL,"
                " until double precision NOT NULL)"
            )
        with self._connection() as conn:
            for table in _EXPIRING:
                build_concurrently(conn, f"tessera_{table}_until", f"tessera_{table}", "until")

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

    def revoke_app_sessions_before(
        self, account_id: UUID, client_id: str, cutoff: datetime, ttl: timedelta
    ) -> None:
        until = datetime.now(UTC) + ttl
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO tessera_revoked_apps AS r VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (account_id, client_id) DO UPDATE SET"
                " cutoff = greatest(r.cutoff, excluded.cutoff),"
                " until = greatest(r.until, excluded.until)",
                (account_id, client_id, cutoff.timestamp(), until.timestamp()),
            )

    def changing(self, account_ids: Sequence[UUID]) -> str:
        token = _changing_token()
        until = _now() + CHANGING_TTL.total_seconds()
        with self._connection() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO tessera_account_marks VALUES (%s, %s, %s) ON CONFLICT (account_id)"
                " DO UPDATE SET mark = excluded.mark, until = excluded.until",
                [(account_id, token, until) for account_id in account_ids],
            )
        return token

    def changed(self, token: str, versions: dict[UUID, int], written: dict[UUID, int]) -> None:
        now = _now()
        until = now + MARK_TTL.total_seconds()
        with self._connection() as conn, conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO tessera_account_marks AS m VALUES (%s, %s, %s)"
                " ON CONFLICT (account_id) DO UPDATE SET mark = excluded.mark,"
                " until = excluded.until WHERE m.mark = %s OR m.until < %s"
                "  OR (m.mark NOT LIKE 'changing:%%' AND m.mark::bigint < %s)",
                [(a, str(v), until, token, now, v) for a, v in versions.items()],
            )
            cursor.executemany(
                "INSERT INTO tessera_written_positions AS w VALUES (%s, %s, %s)"
                " ON CONFLICT (principal) DO UPDATE SET"
                " position = greatest(w.position, excluded.position), until = excluded.until",
                [(p, position, until) for p, position in written.items()],
            )

    def settle(self, account_id: UUID, version: int) -> None:
        now = _now()
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO tessera_account_marks AS m VALUES (%s, %s, %s) ON CONFLICT"
                " (account_id) DO UPDATE SET mark = excluded.mark, until = excluded.until"
                " WHERE m.until < %s",
                (account_id, str(version), now + MARK_TTL.total_seconds(), now),
            )

    async def standing(self, claims: AccessClaims) -> Standing:
        return await asyncio.to_thread(self.standing_now, claims)

    def standing_now(self, claims: AccessClaims) -> Standing:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM tessera_revoked_accounts"
                "  WHERE account_id = %s AND cutoff >= %s AND kept_session IS DISTINCT FROM %s)"
                " OR EXISTS (SELECT 1 FROM tessera_revoked_apps"
                "  WHERE account_id = %s AND client_id = %s AND cutoff >= %s),"
                " (SELECT mark FROM tessera_account_marks WHERE account_id = %s AND until >= %s),"
                " (SELECT position FROM tessera_written_positions WHERE principal = %s),"
                " EXISTS (SELECT 1 FROM tessera_revoked_sessions WHERE session_id = %s)",
                (
                    claims.account_id,
                    claims.issued_at,
                    claims.session_id,
                    claims.account_id,
                    claims.client_id,
                    claims.issued_at,
                    claims.account_id,
                    _now(),
                    claims.account_id,
                    claims.session_id,
                ),
            ).fetchone()
        assert row is not None
        return _standing_of_row(row)

    def forget_expired(
        self, now: datetime, limit: int, tables: Collection[str] | None = None
    ) -> dict[str, int]:
        """As SqliteRevocationList.forget_expired. By row version (ctid), and `until` checked
        again: a row another process extends meanwhile (a session revoked once more) is a new
        version, which this delete neither matches nor removes."""
        before = (now - EXPIRY_GRACE).timestamp()
        deleted: dict[str, int] = {}
        for table in _TABLES if tables is None else [t for t in _TABLES if t in tables]:
            with self._connection() as conn:
                deleted[table] = conn.execute(
                    f"DELETE FROM tessera_{table} WHERE until < %s AND ctid = ANY(ARRAY("  # noqa: S608
                    f"SELECT ctid FROM tessera_{table} WHERE until < %s LIMIT %s))",
                    (before, before, limit),
                ).rowcount
        return deleted

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return guarded_connection(self._pool, self._outage)

    def close(self) -> None:
        self._pool.close()


@contextlib.contextmanager
def guarded_connection(
    pool: ConnectionPool, outage: Outage | None
) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection, refused at once while the database is known to be down; a database
    that does not answer becomes Unavailable (a 503)."""
    if outage is not None:
        outage.check()
    acquired = False
    try:
        with pool.connection() as conn:
            acquired = True
            yield conn
    except (psycopg.OperationalError, psycopg.InterfaceError) as error:
        # Only a connection that cannot be had says the database is gone (see fail_fast).
        if outage is not None and not acquired:
            outage.failed(error)
        raise Unavailable("database") from error


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


# Sets each account's version mark unless another save has marked it changing since (its own
# "changed" will follow, or its mark expires), or a newer version is already there; raises each
# principal's written position to the new one, never lowers it.
# KEYS: n mark keys, then the written keys. ARGV: token, ttl ms, n, n versions, the positions.
_CHANGED = """
local token, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
for i = 1, n do
  local current = redis.call('GET', KEYS[i])
  local version = ARGV[3 + i]
  if current == false or current == token
     or (tonumber(current) ~= nil and tonumber(current) < tonumber(version)) then
    redis.call('SET', KEYS[i], version, 'PX', ttl)
  end
end
for i = n + 1, #KEYS do
  local position = tonumber(ARGV[3 + i])
  if position > tonumber(redis.call('GET', KEYS[i]) or '0') then
    redis.call('SET', KEYS[i], position, 'PX', ttl)
  end
end
"""


# Sets an app's consent cutoff unless a later one is there; the key lives at least `ttl`.
# KEYS[1]: the cutoff's key. ARGV: the cutoff (seconds), ttl ms.
_LATER_CUTOFF = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
"""


# Sets a session's end unless one lasting longer is there (a code's second use keeps its end
# for as long as the session could have lived; a later, shorter end must not cut that short).
# KEYS[1]: the session's key. ARGV: ttl ms.
_LONGER = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
"""


class AsyncRedis:
    """The request path's Redis client. An async client is bound to the event loop that first
    uses it: one per loop (a server process has one)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis]
        self._clients = weakref.WeakKeyDictionary()

    def client(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = redis.asyncio.Redis.from_url(
                self._url, socket_timeout=1.0, socket_connect_timeout=1.0
            )
        return client


class RedisRevocationList:
    """Shared by every API process at once. Fails closed: if Redis does not answer, no token is
    accepted and no account is saved (Unavailable, a 503): a revoked token must never pass,
    and a change no other process can hear of must not be made."""

    def __init__(self, client: redis.Redis, url: str, prefix: str = "tessera:") -> None:
        self._client = client
        self._prefix = prefix
        self._changed = client.register_script(_CHANGED)
        self._longer = client.register_script(_LONGER)
        self._async = AsyncRedis(url)

    def _ttl_ms(self, ttl: timedelta) -> int:
        return max(1, int(ttl.total_seconds() * 1000))

    def _revocation_ms(self, ttl: timedelta) -> int:
        # Kept EXPIRY_GRACE longer, as the tables' purge keeps their rows: clock skew and a
        # refresh racing the revocation let a refused token outlive `ttl` a little.
        return self._ttl_ms(ttl + EXPIRY_GRACE)

    def _keys(self, claims: AccessClaims) -> list[str]:
        keys = [
            f"{self._prefix}revoked:session:{claims.session_id}",
            f"{self._prefix}revoked:account:{claims.account_id}",
            f"{self._prefix}mark:{claims.account_id}",
            f"{self._prefix}written:{claims.account_id}",
        ]
        if claims.client_id is not None:
            keys.append(self._app_key(claims.account_id, claims.client_id))
        return keys

    def _app_key(self, account_id: UUID, client_id: str) -> str:
        return f"{self._prefix}revoked:app:{account_id}:{client_id}"

    def revoke_session(self, session_id: UUID, ttl: timedelta) -> None:
        try:
            self._longer(
                keys=[f"{self._prefix}revoked:session:{session_id}"],
                args=[self._revocation_ms(ttl)],
            )
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    def revoke_sessions_before(
        self, account_id: UUID, cutoff: datetime, ttl: timedelta, keep: UUID | None = None
    ) -> None:
        value = f"{cutoff.timestamp()!r}|{keep or ''}"
        try:
            self._client.set(
                f"{self._prefix}revoked:account:{account_id}", value, px=self._revocation_ms(ttl)
            )
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    def revoke_app_sessions_before(
        self, account_id: UUID, client_id: str, cutoff: datetime, ttl: timedelta
    ) -> None:
        # A cutoff only moves later (GT needs Redis 7; a plain SET could undo a later one).
        try:
            self._client.eval(
                _LATER_CUTOFF,
                1,
                self._app_key(account_id, client_id),
                repr(cutoff.timestamp()),
                self._revocation_ms(ttl),
            )
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    def changing(self, account_ids: Sequence[UUID]) -> str:
        token = _changing_token()
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for account_id in account_ids:
                    pipe.set(
                        f"{self._prefix}mark:{account_id}", token, px=self._ttl_ms(CHANGING_TTL)
                    )
                pipe.execute()
        except redis.RedisError as error:
            raise Unavailable("redis") from error
        return token

    def changed(self, token: str, versions: dict[UUID, int], written: dict[UUID, int]) -> None:
        keys = [f"{self._prefix}mark:{a}" for a in versions]
        keys += [f"{self._prefix}written:{p}" for p in written]
        args = [token, self._ttl_ms(MARK_TTL), len(versions), *versions.values()]
        try:
            self._changed(keys=keys, args=[*args, *written.values()])  # type: ignore[list-item]
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    def settle(self, account_id: UUID, version: int) -> None:
        try:
            self._client.set(
                f"{self._prefix}mark:{account_id}", str(version), px=self._ttl_ms(MARK_TTL), nx=True
            )
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    async def standing(self, claims: AccessClaims) -> Standing:
        try:
            values = await self._async.client().mget(self._keys(claims))
        except redis.RedisError as error:
            raise Unavailable("redis") from error
        return _standing(claims, values)

    def standing_now(self, claims: AccessClaims) -> Standing:
        try:
            values = self._client.mget(self._keys(claims))
        except redis.RedisError as error:
            raise Unavailable("redis") from error
        return _standing(claims, values)

    def close(self) -> None:
        self._client.close()


def _standing(claims: AccessClaims, values: list[Any]) -> Standing:
    """What RedisRevocationList's keys (_keys) say of the token's session and account."""
    session, account, mark, written, *app = values
    revoked = session is not None or (
        bool(app) and app[0] is not None and float(_text(app[0])) >= claims.issued_at
    )
    if not revoked and account is not None:
        cutoff, _, kept = _text(account).partition("|")
        revoked = float(cutoff) >= claims.issued_at and kept != str(claims.session_id)
    return Standing(
        revoked=revoked,
        mark=None if mark is None else _text(mark),
        written=int(written or 0),
        ended=session is not None,
    )


def _standing_of_row(row: Any) -> Standing:
    """What the SQL stores' standing query answers: (revoked, mark, written, ended)."""
    ended = bool(row[3])
    return Standing(
        revoked=ended or bool(row[0]), mark=row[1], written=int(row[2] or 0), ended=ended
    )
