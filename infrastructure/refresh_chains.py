"""Each session's chain of refresh tokens, in the shared store beside the revocation list: a
rotation is one atomic step of one row (or one Redis script), with no place in the event log's
global order and no event-store round trip."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import redis
from psycopg_pool import ConnectionPool

from application.persistence.event_log import Outage
from application.ports import Chain, Turn, Unavailable
from infrastructure.local_file import LocalFile
from infrastructure.revocation import ACCOUNT_MARKS, AsyncRedis, guarded_connection

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(at: datetime) -> int:
    """Microseconds, exactly: a session started in the microsecond after a cutoff is not cut
    off. (Below 2**53 until the year 2255, so exact in Lua's numbers too.)"""
    return (at - _EPOCH) // timedelta(microseconds=1)


def _at(us: int | str | bytes) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


@dataclass(frozen=True)
class _Step:
    """One turn's arguments, in the stores' units (microseconds of the service's clock)."""

    turn: int
    digest: str
    next_digest: str
    now: int
    idle: int
    record_every: int
    grace: int

    @classmethod
    def of(
        cls,
        turn: int,
        digest: str,
        next_digest: str,
        at: datetime,
        idle: timedelta,
        record_every: timedelta,
        grace: timedelta,
    ) -> _Step:
        return cls(
            turn,
            digest,
            next_digest,
            _us(at),
            idle // timedelta(microseconds=1),
            record_every // timedelta(microseconds=1),
            grace // timedelta(microseconds=1),
        )


# The row every SQL store keeps, in this order. turned_us: when the current token was made
# (0 for chains begun before it was kept: no grace for their tokens).
_COLUMNS = (
    "account_id, started_us, generation, turn, digest, expires_us, ends_us, recorded_us, turned_us"
)


def _chain(row: Sequence[Any], turn: int, expires: int, recorded: int) -> Chain:
    return Chain(
        account_id=UUID(str(row[0])),
        started_at=_at(row[1]),
        password_generation=int(row[2]),
        turn=turn,
        expires_at=_at(expires),
        ends_at=_at(row[6]),
        recorded_at=_at(recorded),
    )


def _decide(row: Sequence[Any] | None, step: _Step) -> tuple[Turn, dict[str, int | str] | None]:
    """The step on a row read under a lock: what it found, and the columns to write (None:
    nothing; an empty dict: delete the chain). The Redis script below is the same rule."""
    if row is None or int(row[5]) <= step.now:
        return Turn(chain=None), None
    current = int(row[3])
    if (
        step.turn == current - 1
        and row[4] == step.next_digest
        # Never negative: a step whose clock was read before the turn it lost to is no later
        # than that turn, and with no interval (strict) no repeat is ever given.
        and max(0, step.now - int(row[8])) < step.grace
    ):
        # The token turned last, back within the grace interval (two tabs, a retried request
        # whose answer was lost): its successor is the current token, given again.
        return Turn(chain=_chain(row, current, int(row[5]), int(row[7])), again=True), None
    if step.turn < current:
        # Two parties hold the session: it ends here, before anyone can turn it again.
        return Turn(chain=_chain(row, current, int(row[5]), int(row[7])), spent=True), {}
    if step.turn != current or row[4] != step.digest:
        return Turn(chain=None), None
    expires = min(step.now + step.idle, int(row[6]))
    recorded = int(row[7])
    record = current == 0 or step.now - recorded >= step.record_every
    if record:
        recorded = step.now
    changes: dict[str, int | str] = {
        "turn": current + 1,
        "digest": step.next_digest,
        "expires_us": expires,
        "recorded_us": recorded,
        "turned_us": step.now,
    }
    chain = _chain(row, current + 1, expires, recorded)
    return Turn(chain=chain, turned=True, record=record), changes


def _begin_row(session_id: UUID, chain: Chain, digest: str) -> tuple[Any, ...]:
    return (
        str(session_id),
        str(chain.account_id),
        _us(chain.started_at),
        chain.password_generation,
        chain.turn,
        digest,
        _us(chain.expires_at),
        _us(chain.ends_at),
        _us(chain.recorded_at),
        _us(chain.recorded_at),  # turned_us: its token was made when it was last recorded
        chain.browser_session_id and str(chain.browser_session_id),
    )


class _ChainsInTables:
    """The SQL stores' turn: the rule of _decide on a row locked for it, off the event loop (a
    write may wait for another process's)."""

    async def turn(
        self,
        session_id: UUID,
        turn: int,
        digest: str,
        next_digest: str,
        at: datetime,
        idle: timedelta,
        record_every: timedelta,
        grace: timedelta,
    ) -> Turn:
        step = _Step.of(turn, digest, next_digest, at, idle, record_every, grace)
        return await asyncio.to_thread(self._turn, session_id, step)

    def _turn(self, session_id: UUID, step: _Step) -> Turn:
        raise NotImplementedError


class SqliteRefreshChains(_ChainsInTables):
    """The embedded default's chains: a table in the file of the revocation list (whose change
    marks a turn reads in the same transaction)."""

    def __init__(self, path: Path) -> None:
        self._file = LocalFile(
            path,
            "CREATE TABLE IF NOT EXISTS refresh_chains ("
            " session_id TEXT PRIMARY KEY, account_id TEXT NOT NULL,"
            " started_us INTEGER NOT NULL, generation INTEGER NOT NULL,"
            " turn INTEGER NOT NULL, digest TEXT NOT NULL, expires_us INTEGER NOT NULL,"
            " ends_us INTEGER NOT NULL, recorded_us INTEGER NOT NULL,"
            " turned_us INTEGER NOT NULL DEFAULT 0, browser_session TEXT);"
            "CREATE INDEX IF NOT EXISTS refresh_chains_expiry ON refresh_chains (expires_us);"
            # A turn reads the marks: the table is there whichever of the two starts first.
            + ACCOUNT_MARKS,
        )
        with self._file.transaction() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(refresh_chains)")}
            if "turned_us" not in columns:  # a file from before the reuse interval
                db.execute(
                    "ALTER TABLE refresh_chains ADD COLUMN turned_us INTEGER NOT NULL DEFAULT 0"
                )
            if "browser_session" not in columns:  # a file from before apps' online sessions
                db.execute("ALTER TABLE refresh_chains ADD COLUMN browser_session TEXT")
            db.execute(
                "CREATE INDEX IF NOT EXISTS refresh_chains_browser"
                " ON refresh_chains (browser_session) WHERE browser_session IS NOT NULL"
            )

    def begin(self, session_id: UUID, chain: Chain, digest: str) -> None:
        with self._file.transaction() as db:
            # Chains that ran out are swept as new ones begin (an index range, a few rows).
            db.execute("DELETE FROM refresh_chains WHERE expires_us < ?", (_us(chain.started_at),))
            db.execute(
                "INSERT INTO refresh_chains VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _begin_row(session_id, chain, digest),
            )

    def _turn(self, session_id: UUID, step: _Step) -> Turn:
        with self._file.transaction() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM refresh_chains WHERE session_id = ?",  # noqa: S608
                (str(session_id),),
            ).fetchone()
            found, changes = _decide(row, step)
            if changes == {}:
                db.execute("DELETE FROM refresh_chains WHERE session_id = ?", (str(session_id),))
            elif changes:
                db.execute(
                    "UPDATE refresh_chains SET turn = ?, digest = ?, expires_us = ?,"
                    " recorded_us = ?, turned_us = ? WHERE session_id = ?",
                    (*changes.values(), str(session_id)),
                )
            mark = None
            if found.chain is not None:
                mark_row = db.execute(
                    "SELECT mark FROM account_marks WHERE account_id = ? AND until >= ?",
                    (str(found.chain.account_id), datetime.now(UTC).timestamp()),
                ).fetchone()
                mark = None if mark_row is None else mark_row[0]
        return Turn(found.chain, found.turned, found.spent, found.record, mark, found.again)

    def end(self, session_ids: Sequence[UUID]) -> None:
        with self._file.connection() as db:
            db.executemany(
                "DELETE FROM refresh_chains WHERE session_id = ?", [(str(s),) for s in session_ids]
            )

    def online_of(self, browser_session_id: UUID) -> list[UUID]:
        with self._file.connection() as db:
            rows = db.execute(
                "SELECT session_id FROM refresh_chains WHERE browser_session = ?",
                (str(browser_session_id),),
            ).fetchall()
        return [UUID(row[0]) for row in rows]

    def close(self) -> None:
        self._file.close()


class PostgresRefreshChains(_ChainsInTables):
    """Chains in the service's PostgreSQL when there is no Redis: a row locked for one turn,
    in a transaction of its own (no place in the event log's order)."""

    def __init__(self, pool: ConnectionPool, outage: Outage | None = None) -> None:
        self._pool = pool
        self._outage = outage
        with self._connection() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS tessera_refresh_chains ("
                " session_id uuid PRIMARY KEY, account_id uuid NOT NULL,"
                " started_us bigint NOT NULL, generation integer NOT NULL, turn integer NOT NULL,"
                " digest text NOT NULL, expires_us bigint NOT NULL, ends_us bigint NOT NULL,"
                " recorded_us bigint NOT NULL, turned_us bigint NOT NULL DEFAULT 0,"
                " browser_session uuid)"
            )
            # Only when missing (a table from before the reuse interval): ALTER TABLE waits
            # for every query on the table.
            missing = conn.execute(
                "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns"
                " WHERE table_name = 'tessera_refresh_chains' AND column_name = 'turned_us'"
                " AND table_schema = current_schema())"
            ).fetchone()
            if missing:
                conn.execute(
                    "ALTER TABLE tessera_refresh_chains"
                    " ADD COLUMN IF NOT EXISTS turned_us bigint NOT NULL DEFAULT 0"
                )
            # Likewise a table from before apps' online sessions.
            missing = conn.execute(
                "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns"
                " WHERE table_name = 'tessera_refresh_chains' AND column_name = 'browser_session'"
                " AND table_schema = current_schema())"
            ).fetchone()
            if missing:
                conn.execute(
                    "ALTER TABLE tessera_refresh_chains"
                    " ADD COLUMN IF NOT EXISTS browser_session uuid"
                )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS tessera_refresh_chains_expiry"
                " ON tessera_refresh_chains (expires_us)"
            )
            conn.execute(
                "CREATE INDEX IF NOT EXISTS tessera_refresh_chains_browser"
                " ON tessera_refresh_chains (browser_session) WHERE browser_session IS NOT NULL"
            )

    def begin(self, session_id: UUID, chain: Chain, digest: str) -> None:
        with self._connection() as conn:
            conn.execute(
                "DELETE FROM tessera_refresh_chains WHERE expires_us < %s", (_us(chain.started_at),)
            )
            conn.execute(
                "INSERT INTO tessera_refresh_chains"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                _begin_row(session_id, chain, digest),
            )

    def _turn(self, session_id: UUID, step: _Step) -> Turn:
        with self._connection() as conn, conn.transaction():
            row = conn.execute(
                f"SELECT {_COLUMNS}, (SELECT mark FROM tessera_account_marks m"  # noqa: S608
                "  WHERE m.account_id = c.account_id AND until >= %s)"
                " FROM tessera_refresh_chains c WHERE session_id = %s FOR UPDATE",
                (datetime.now(UTC).timestamp(), session_id),
            ).fetchone()
            found, changes = _decide(row, step)
            if changes == {}:
                conn.execute(
                    "DELETE FROM tessera_refresh_chains WHERE session_id = %s", (session_id,)
                )
            elif changes:
                conn.execute(
                    "UPDATE tessera_refresh_chains SET turn = %s, digest = %s, expires_us = %s,"
                    " recorded_us = %s, turned_us = %s WHERE session_id = %s",
                    (*changes.values(), session_id),
                )
        mark = None if row is None or found.chain is None else row[9]
        return Turn(found.chain, found.turned, found.spent, found.record, mark, found.again)

    def end(self, session_ids: Sequence[UUID]) -> None:
        with self._connection() as conn:
            conn.execute(
                "DELETE FROM tessera_refresh_chains WHERE session_id = ANY(%s)",
                (list(session_ids),),
            )

    def online_of(self, browser_session_id: UUID) -> list[UUID]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT session_id FROM tessera_refresh_chains WHERE browser_session = %s",
                (browser_session_id,),
            ).fetchall()
        return [UUID(str(row[0])) for row in rows]

    def _connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return guarded_connection(self._pool, self._outage)

    def close(self) -> None:
        """The pool is the revocation list's, closed with it."""


# The rule of _decide, in one round trip. KEYS[1]: the chain; ARGV: turn, digest, next digest,
# now, idle, record_every (µs), the marks' key prefix, grace (µs). Times are integral
# microseconds (exact in Lua's numbers). The key expires with the chain, counted on the
# service's clock. A chain begun before the reuse interval has no 'turned': no grace.
_TURN = """
local c = redis.call('HMGET', KEYS[1], 'account', 'started', 'generation', 'turn', 'digest',
                     'expires', 'ends', 'recorded', 'turned')
local now = tonumber(ARGV[4])
if not c[1] or tonumber(c[6]) <= now then return {'none'} end
local mark = redis.call('GET', ARGV[7] .. c[1])
local current = tonumber(c[4])
local presented = tonumber(ARGV[1])
if presented == current - 1 and c[5] == ARGV[3] and c[9]
   and math.max(0, now - tonumber(c[9])) < tonumber(ARGV[8]) then
  return {'again', c[1], c[2], c[3], current, c[6], c[7], c[8], mark}
end
if presented < current then
  redis.call('DEL', KEYS[1])
  return {'spent', c[1], c[2], c[3], current, c[6], c[7], c[8], mark}
end
if presented ~= current or c[5] ~= ARGV[2] then return {'none'} end
local expires = math.min(now + tonumber(ARGV[5]), tonumber(c[7]))
local recorded = tonumber(c[8])
local record = 0
if current == 0 or now - recorded >= tonumber(ARGV[6]) then
  recorded = now
  record = 1
end
redis.call('HSET', KEYS[1], 'turn', current + 1, 'digest', ARGV[3], 'expires', expires,
           'recorded', recorded, 'turned', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((expires - now) / 1000))
return {'turned', c[1], c[2], c[3], current + 1, expires, c[7], recorded, mark, record}
"""


class RedisRefreshChains:
    """Chains in Redis: a hash per session, turned by one script that also reads the account's
    change mark, so a refresh is one round trip. Fails closed (Unavailable) like the revocation
    list. Redis must not evict keys (`maxmemory-policy noeviction`, as the denylist needs): an
    evicted chain ends its session."""

    def __init__(self, client: redis.Redis, url: str, prefix: str = "tessera:") -> None:
        self._client = client
        self._async = AsyncRedis(url)
        self._prefix = prefix

    def _key(self, session_id: UUID) -> str:
        return f"{self._prefix}chain:{session_id}"

    def _online_key(self, browser_session_id: UUID) -> str:
        return f"{self._prefix}online:{browser_session_id}"

    def begin(self, session_id: UUID, chain: Chain, digest: str) -> None:
        row = _begin_row(session_id, chain, digest)
        names = (
            "account",
            "started",
            "generation",
            "turn",
            "digest",
            "expires",
            "ends",
            "recorded",
            "turned",
        )
        fields: dict[Any, Any] = dict(zip(names, row[1:-1], strict=True))
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(self._key(session_id), mapping=fields)
                life = chain.expires_at - chain.recorded_at  # both on the service's clock
                pipe.pexpire(self._key(session_id), max(1, life // timedelta(milliseconds=1)))
                if chain.browser_session_id is not None:
                    # In the same round trip; the set lives as long as its longest session
                    # may, its members whose chains have gone being skipped when read.
                    online = self._online_key(chain.browser_session_id)
                    pipe.sadd(online, str(session_id))
                    longest = chain.ends_at - chain.recorded_at
                    pipe.pexpire(online, max(1, longest // timedelta(milliseconds=1)), gt=True)
                    pipe.pexpire(online, max(1, longest // timedelta(milliseconds=1)), nx=True)
                pipe.execute()
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    async def turn(
        self,
        session_id: UUID,
        turn: int,
        digest: str,
        next_digest: str,
        at: datetime,
        idle: timedelta,
        record_every: timedelta,
        grace: timedelta,
    ) -> Turn:
        step = _Step.of(turn, digest, next_digest, at, idle, record_every, grace)
        args: list[str | int] = [
            step.turn,
            digest,
            next_digest,
            step.now,
            step.idle,
            step.record_every,
        ]
        try:
            reply = await self._async.client().eval(
                _TURN, 1, self._key(session_id), *args, f"{self._prefix}mark:", step.grace
            )
        except redis.RedisError as error:
            raise Unavailable("redis") from error
        outcome = _text(reply[0])
        if outcome == "none":
            return Turn(chain=None)
        account, started, generation, current, expires, ends, recorded, mark = reply[1:9]
        chain = Chain(
            account_id=UUID(_text(account)),
            started_at=_at(started),
            password_generation=int(generation),
            turn=int(current),
            expires_at=_at(expires),
            ends_at=_at(ends),
            recorded_at=_at(recorded),
        )
        return Turn(
            chain=chain,
            turned=outcome == "turned",
            spent=outcome == "spent",
            record=outcome == "turned" and int(reply[9]) == 1,
            mark=None if mark is None else _text(mark),
            again=outcome == "again",
        )

    def end(self, session_ids: Sequence[UUID]) -> None:
        if not session_ids:
            return
        try:
            self._client.delete(*(self._key(s) for s in session_ids))
        except redis.RedisError as error:
            raise Unavailable("redis") from error

    def online_of(self, browser_session_id: UUID) -> list[UUID]:
        try:
            members = self._client.smembers(self._online_key(browser_session_id))
        except redis.RedisError as error:
            raise Unavailable("redis") from error
        # Some may have ended since: the caller skips the sessions already over.
        return [UUID(_text(member)) for member in members]

    def close(self) -> None:
        """The client is the revocation list's, closed with it."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
