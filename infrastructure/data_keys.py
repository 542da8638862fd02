"""Each person's data key, in a table of its own, wrapped by SECRET_KEY; and the erasure ledger.

The table lives beside the events (the default) or in a key store of its own (KEY_STORE_URL,
see infrastructure/key_store.py), so that a backup of the event database alone opens nothing.

A data key is 256 random bits, made the first time something of the person's is sealed and
stored wrapped (AES-GCM under a key derived from SECRET_KEY, bound to the owner's id; see
infrastructure/keyring.py, which also says how SECRET_KEY rotates). The service's own keys
(fingerprints, sealed values, refresh-token tags, CSRF) are rows of the same table. Forgetting
the person overwrites the wrapped key with nothing and keeps a tombstone, so nothing is sealed
for them again. On SQLite the table has a file of its own, written with secure_delete on and a
rollback journal (no write-ahead log that would keep old pages): a destroyed key leaves no bytes
behind in any file.

Beside the keys, the ledger of erasures: the account, when, the AccountErased's position, the
claims it released. Written in the same transaction as the tombstone, so no key is destroyed
without its entry; it is how a restored event store that predates an erasure is told, and the
erasure re-applied (application/erasure.py, Erasure.reapply).

Keys are cached in the process for CACHE_SECONDS, so loading an aggregate or projecting a batch
does not ask the table once per event. Forgetting clears this process's cache at once; other
processes may still open the person's values in memory until their entry expires, while the
account already reads as erased everywhere (its last event says so) and every audit read asks the
table itself (`forgotten`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from application.ports import Erased, ForgottenOwner, LostKey
from infrastructure.keyring import (
    FINGERPRINTS,
    SERVICE_KEYS,
    Keyring,
    WrongSecretKey,
    legacy_service_key,
)
from infrastructure.service_keys import BEGINNING, KeyVersion, ServiceKey

log = logging.getLogger(__name__)

CACHE_SECONDS = 30.0
CACHE_SIZE = 10_000
_NONCE = 12  # NIST SP 800-38D's recommended IV length for GCM


_SERVICE_KEYS = UUID("7e55e7a0-5e7c-4e7a-9b1e-000000000000")  # namespace of service key rows
# A tombstone in place of a key: a first one keeps its time.
_SQLITE_TOMBSTONE = (
    "INSERT INTO data_keys (owner, wrapped, forgotten_at) VALUES (?, NULL, ?)"
    " ON CONFLICT (owner) DO UPDATE SET wrapped = NULL,"
    " forgotten_at = coalesce(data_keys.forgotten_at, excluded.forgotten_at)"
)
_SCHEMA_LOCK = 0x7E55E7B  # any constant: the advisory lock around the key tables' creation


KeyRow = tuple[UUID, bytes | None, float | None]  # owner, wrapped key, forgotten_at


class KeyStoreEmpty(Exception):
    """The key store holds no key, while the event store holds events: a KEY_STORE_URL that
    names the wrong (or an empty, or a lost) store would otherwise make new keys for everyone
    and seal what follows under them, while every earlier value stays unreadable."""

    def __init__(self, where: str, events: int) -> None:
        super().__init__(
            f"the key store ({where}) holds no key, while the event store holds {events} "
            "events: KEY_STORE_URL names the wrong store, or the key store was lost. Restore "
            "the key store (docs/backups.md) or point KEY_STORE_URL at it; to move the keys "
            "kept beside the events there, run `tessera admin move-keys`"
        )


class DataKeyTable:
    """Where wrapped keys live: get, insert (first writer wins), forget, forgotten."""

    where = "a table of the service's data keys"  # named in messages, never with a password

    def get(self, owner: UUID) -> tuple[bytes | None] | None:
        """(wrapped key or None when forgotten,), or None when the owner has no row."""
        raise NotImplementedError

    def get_many(self, owners: Collection[UUID]) -> dict[UUID, bytes | None]:
        """get() of each owner that has a row, in one read: wrapped key or None (forgotten)."""
        found: dict[UUID, bytes | None] = {}
        for owner in owners:
            row = self.get(owner)
            if row is not None:
                found[owner] = row[0]
        return found

    def insert(self, owner: UUID, wrapped: bytes) -> None:
        raise NotImplementedError

    def forget(self, owner: UUID, at: float) -> None:
        """Overwrites the owner's key with its tombstone (a service key's version retired)."""
        raise NotImplementedError

    def erase(self, owner: UUID, at: float, position: int | None, claims: Sequence[UUID]) -> None:
        """forget() a person's key and write their erasure to the ledger, in one transaction:
        a process that dies does neither or both."""
        raise NotImplementedError

    def forgotten(self, owners: Collection[UUID]) -> set[UUID]:
        raise NotImplementedError

    def erasures(self) -> list[Erased]:
        raise NotImplementedError

    def last_erasure(self) -> Erased | None:
        """The ledger's entry of the furthest AccountErased in the log (the greatest position)."""
        raise NotImplementedError

    def unplaced_erasures(self) -> list[Erased]:
        """The ledger's entries that do not know their AccountErased's position (written before
        the ledger kept it)."""
        raise NotImplementedError

    def is_empty(self) -> bool:
        """Holds no row at all: no key, no tombstone, not even the service's own keys."""
        raise NotImplementedError

    def rows(self) -> list[KeyRow]:
        """Every row as stored (owner, wrapped key or None, forgotten_at or None): to move them."""
        raise NotImplementedError

    def load(self, rows: Sequence[KeyRow], erasures: Sequence[Erased]) -> None:
        """Rows and ledger entries another table held, written in one transaction."""
        raise NotImplementedError

    def drop(self) -> None:
        """Removes the table and the ledger from this store (their rows moved elsewhere)."""
        raise NotImplementedError

    def wrapped_keys(self, limit: int | None = None) -> Iterator[tuple[UUID, bytes]]:
        """Every key not forgotten (or the first `limit`), as stored."""
        raise NotImplementedError

    def replace(self, owner: UUID, old: bytes, new: bytes) -> bool:
        """`new` in place of `old`, unless the row changed meanwhile (forgotten)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class SqliteDataKeyTable(DataKeyTable):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self.where = f"SQLite file {path}"
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute("PRAGMA journal_mode=DELETE")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS data_keys"
                " (owner TEXT PRIMARY KEY, wrapped BLOB, forgotten_at REAL)"
            )
            new = not self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'erasures'"
            ).fetchone()
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS erasures (account TEXT PRIMARY KEY,"
                " erased_at REAL NOT NULL, position INTEGER, claims TEXT NOT NULL DEFAULT '')"
            )
            # A start looks up the furthest entry only (application/privacy/restore.py).
            self._conn.execute(
                "CREATE INDEX IF NOT EXISTS erasures_by_position ON erasures (position)"
            )
            if new:  # tombstones written before the ledger existed are its first entries
                tombstones = self._conn.execute(
                    "SELECT owner, forgotten_at FROM data_keys WHERE forgotten_at IS NOT NULL"
                ).fetchall()
                self._conn.executemany(
                    "INSERT INTO erasures (account, erased_at) VALUES (?, ?)"
                    " ON CONFLICT DO NOTHING",
                    [(o, at) for o, at in tombstones if not is_service_owner(UUID(o))],
                )

    def get(self, owner: UUID) -> tuple[bytes | None] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT wrapped FROM data_keys WHERE owner = ?", (str(owner),)
            ).fetchone()
        return None if row is None else (row[0],)

    def get_many(self, owners: Collection[UUID]) -> dict[UUID, bytes | None]:
        found: dict[UUID, bytes | None] = {}
        keys = [str(owner) for owner in owners]
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            query = (
                "SELECT owner, wrapped FROM data_keys"  # noqa: S608
                f" WHERE owner IN ({', '.join('?' * len(chunk))})"
            )
            with self._lock:
                rows = self._conn.execute(query, chunk).fetchall()
            found.update((UUID(row[0]), row[1]) for row in rows)
        return found

    def insert(self, owner: UUID, wrapped: bytes) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO data_keys (owner, wrapped) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (str(owner), wrapped),
            )

    def forget(self, owner: UUID, at: float) -> None:
        with self._lock:
            self._conn.execute(_SQLITE_TOMBSTONE, (str(owner), at))

    def erase(self, owner: UUID, at: float, position: int | None, claims: Sequence[UUID]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(_SQLITE_TOMBSTONE, (str(owner), at))
                self._conn.execute(
                    "INSERT INTO erasures (account, erased_at, position, claims)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
                    " position = coalesce(excluded.position, erasures.position),"
                    " claims = CASE erasures.claims WHEN '' THEN excluded.claims"
                    " ELSE erasures.claims END",
                    (str(owner), at, position, ",".join(str(claim) for claim in claims)),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def erasures(self) -> list[Erased]:
        return self._ledger("ORDER BY erased_at")

    def last_erasure(self) -> Erased | None:
        found = self._ledger("WHERE position IS NOT NULL ORDER BY position DESC LIMIT 1")
        return found[0] if found else None

    def unplaced_erasures(self) -> list[Erased]:
        return self._ledger("WHERE position IS NULL ORDER BY erased_at")

    def _ledger(self, clauses: str) -> list[Erased]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT account, erased_at, position, claims FROM erasures {clauses}"  # noqa: S608
            ).fetchall()
        return [
            Erased(
                UUID(account),
                datetime.fromtimestamp(at, UTC),
                position,
                tuple(UUID(claim) for claim in claims.split(",") if claim),
            )
            for account, at, position, claims in rows
        ]

    def is_empty(self) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM data_keys LIMIT 1").fetchone() is None

    def rows(self) -> list[KeyRow]:
        with self._lock:
            found = self._conn.execute("SELECT owner, wrapped, forgotten_at FROM data_keys")
            return [(UUID(owner), wrapped, at) for owner, wrapped, at in found.fetchall()]

    def load(self, rows: Sequence[KeyRow], erasures: Sequence[Erased]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO data_keys (owner, wrapped, forgotten_at) VALUES (?, ?, ?)",
                    [(str(owner), wrapped, at) for owner, wrapped, at in rows],
                )
                self._conn.executemany(
                    "INSERT INTO erasures (account, erased_at, position, claims)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
                    " position = excluded.position, claims = excluded.claims",
                    [
                        (
                            str(e.account_id),
                            e.at.timestamp(),
                            e.position,
                            ",".join(str(claim) for claim in e.claims),
                        )
                        for e in erasures
                    ],
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def drop(self) -> None:
        with self._lock:
            self._conn.close()
        self._path.unlink()
        for leftover in (self._path.with_name(self._path.name + "-journal"),):
            leftover.unlink(missing_ok=True)

    def forgotten(self, owners: Collection[UUID]) -> set[UUID]:
        found: set[UUID] = set()
        keys = [str(owner) for owner in owners]
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            query = (
                "SELECT owner FROM data_keys WHERE forgotten_at IS NOT NULL"  # noqa: S608
                f" AND owner IN ({', '.join('?' * len(chunk))})"
            )
            with self._lock:
                rows = self._conn.execute(query, chunk).fetchall()
            found.update(UUID(row[0]) for row in rows)
        return found

    def wrapped_keys(self, limit: int | None = None) -> Iterator[tuple[UUID, bytes]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT owner, wrapped FROM data_keys WHERE wrapped IS NOT NULL LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        for owner, wrapped in rows:
            yield UUID(owner), wrapped

    def replace(self, owner: UUID, old: bytes, new: bytes) -> bool:
        with self._lock:
            changed = self._conn.execute(
                "UPDATE data_keys SET wrapped = ? WHERE owner = ? AND wrapped = ?",
                (new, str(owner), old),
            ).rowcount
        return bool(changed)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresDataKeyTable(DataKeyTable):
    """Through a connection pool (eventsourcing's PostgresDatastore): the event store's own, or
    that of a database of its own (KEY_STORE_URL, see key_store_datastore)."""

    table = "tessera_data_keys"
    ledger = "tessera_erasures"

    def __init__(
        self, datastore: Any, owned: bool = False, where: str = "the event store's database"
    ) -> None:
        self._datastore = datastore
        self._owned = owned  # a pool of the key store's own, closed with the table
        self.where = where
        with datastore.transaction(commit=True) as c:
            # Processes starting at once race in CREATE TABLE IF NOT EXISTS (a known PostgreSQL
            # race); the event store's schema lock does not cover a database of the keys' own.
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table}"
                " (owner UUID PRIMARY KEY, wrapped BYTEA, forgotten_at DOUBLE PRECISION)"
            )
            c.execute("SELECT to_regclass(%s) AS found", (self.ledger,))
            row = c.fetchone()
            new = row is None or row["found"] is None
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {self.ledger} (account UUID PRIMARY KEY,"
                " erased_at DOUBLE PRECISION NOT NULL, position BIGINT,"
                " claims UUID[] NOT NULL DEFAULT '{}')"
            )
            # A start looks up the furthest entry only (application/privacy/restore.py).
            c.execute(
                f"CREATE INDEX IF NOT EXISTS {self.ledger}_by_position ON {self.ledger} (position)"
            )
            if new:  # tombstones written before the ledger existed are its first entries
                c.execute(
                    f"SELECT owner, forgotten_at FROM {self.table}"  # noqa: S608
                    " WHERE forgotten_at IS NOT NULL"
                )
                tombstones = [
                    (row["owner"], row["forgotten_at"])
                    for row in c.fetchall()
                    if not is_service_owner(row["owner"])
                ]
                c.executemany(
                    f"INSERT INTO {self.ledger} (account, erased_at) VALUES (%s, %s)"  # noqa: S608
                    " ON CONFLICT DO NOTHING",
                    tombstones,
                )

    def get(self, owner: UUID) -> tuple[bytes | None] | None:
        with self._datastore.transaction(commit=False) as c:
            c.execute(f"SELECT wrapped FROM {self.table} WHERE owner = %s", (owner,))  # noqa: S608
            row = c.fetchone()
        return None if row is None else (None if row["wrapped"] is None else bytes(row["wrapped"]),)

    def get_many(self, owners: Collection[UUID]) -> dict[UUID, bytes | None]:
        if not owners:
            return {}
        with self._datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT owner, wrapped FROM {self.table} WHERE owner = ANY(%s)",  # noqa: S608
                (list(owners),),
            )
            return {
                row["owner"]: None if row["wrapped"] is None else bytes(row["wrapped"])
                for row in c.fetchall()
            }

    def insert(self, owner: UUID, wrapped: bytes) -> None:
        with self._datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT INTO {self.table} (owner, wrapped) VALUES (%s, %s)"  # noqa: S608
                " ON CONFLICT DO NOTHING",
                (owner, wrapped),
            )

    def forget(self, owner: UUID, at: float) -> None:
        with self._datastore.transaction(commit=True) as c:
            self._tombstone(c, owner, at)

    def _tombstone(self, c: Any, owner: UUID, at: float) -> None:
        c.execute(
            f"INSERT INTO {self.table} AS k (owner, wrapped, forgotten_at)"  # noqa: S608
            " VALUES (%s, NULL, %s) ON CONFLICT (owner) DO UPDATE SET wrapped = NULL,"
            " forgotten_at = coalesce(k.forgotten_at, excluded.forgotten_at)",
            (owner, at),
        )

    def erase(self, owner: UUID, at: float, position: int | None, claims: Sequence[UUID]) -> None:
        with self._datastore.transaction(commit=True) as c:
            self._tombstone(c, owner, at)
            c.execute(
                f"INSERT INTO {self.ledger} AS e (account, erased_at, position, claims)"  # noqa: S608
                " VALUES (%s, %s, %s, %s) ON CONFLICT (account) DO UPDATE SET"
                " position = coalesce(excluded.position, e.position),"
                " claims = CASE WHEN cardinality(e.claims) = 0 THEN excluded.claims"
                " ELSE e.claims END",
                (owner, at, position, list(claims)),
            )

    def erasures(self) -> list[Erased]:
        return self._ledger("ORDER BY erased_at")

    def last_erasure(self) -> Erased | None:
        found = self._ledger("WHERE position IS NOT NULL ORDER BY position DESC LIMIT 1")
        return found[0] if found else None

    def unplaced_erasures(self) -> list[Erased]:
        return self._ledger("WHERE position IS NULL ORDER BY erased_at")

    def _ledger(self, clauses: str) -> list[Erased]:
        with self._datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT account, erased_at, position, claims FROM {self.ledger} {clauses}"  # noqa: S608
            )
            rows = c.fetchall()
        return [
            Erased(
                row["account"],
                datetime.fromtimestamp(row["erased_at"], UTC),
                row["position"],
                tuple(row["claims"]),
            )
            for row in rows
        ]

    def is_empty(self) -> bool:
        with self._datastore.transaction(commit=False) as c:
            c.execute(f"SELECT 1 FROM {self.table} LIMIT 1")  # noqa: S608
            return c.fetchone() is None

    def rows(self) -> list[KeyRow]:
        with self._datastore.transaction(commit=False) as c:
            c.execute(f"SELECT owner, wrapped, forgotten_at FROM {self.table}")  # noqa: S608
            return [
                (
                    row["owner"],
                    None if row["wrapped"] is None else bytes(row["wrapped"]),
                    row["forgotten_at"],
                )
                for row in c.fetchall()
            ]

    def load(self, rows: Sequence[KeyRow], erasures: Sequence[Erased]) -> None:
        with self._datastore.transaction(commit=True) as c:
            c.executemany(
                f"INSERT INTO {self.table} (owner, wrapped, forgotten_at)"  # noqa: S608
                " VALUES (%s, %s, %s)",
                list(rows),
            )
            c.executemany(
                f"INSERT INTO {self.ledger} (account, erased_at, position, claims)"  # noqa: S608
                " VALUES (%s, %s, %s, %s) ON CONFLICT (account) DO UPDATE SET"
                " position = excluded.position, claims = excluded.claims",
                [(e.account_id, e.at.timestamp(), e.position, list(e.claims)) for e in erasures],
            )

    def drop(self) -> None:
        with self._datastore.transaction(commit=True) as c:
            c.execute(f"DROP TABLE {self.table}, {self.ledger}")
        self.close()

    def forgotten(self, owners: Collection[UUID]) -> set[UUID]:
        if not owners:
            return set()
        with self._datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT owner FROM {self.table}"  # noqa: S608
                " WHERE forgotten_at IS NOT NULL AND owner = ANY(%s)",
                (list(owners),),
            )
            return {row["owner"] for row in c.fetchall()}

    def wrapped_keys(self, limit: int | None = None) -> Iterator[tuple[UUID, bytes]]:
        with self._datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT owner, wrapped FROM {self.table} WHERE wrapped IS NOT NULL LIMIT %s",  # noqa: S608
                (limit,),
            )
            rows = c.fetchall()
        for row in rows:
            yield row["owner"], bytes(row["wrapped"])

    def replace(self, owner: UUID, old: bytes, new: bytes) -> bool:
        with self._datastore.transaction(commit=True) as c:
            c.execute(
                f"UPDATE {self.table} SET wrapped = %s WHERE owner = %s AND wrapped = %s",  # noqa: S608
                (new, owner, old),
            )
            return bool(c.rowcount)

    def close(self) -> None:
        if self._owned:
            self._datastore.close()


@dataclass(frozen=True)
class Rekeyed:
    rewrapped: int  # keys wrapped again under the current SECRET_KEY
    current: int  # keys that were already
    forgotten: int  # keys forgotten (an erasure) while the command ran


def _fingerprint(number: int, key: bytes, kind: str, value: str) -> str:
    digest = hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()
    # Version 1's are bare hex digests, as before versions were; later ones are named.
    return digest if number == 1 else f"{number}:{digest}"


def service_owner(name: str, version: int = 1) -> UUID:
    """The key table's row of one of the service's own keys (never a person's id)."""
    return uuid5(_SERVICE_KEYS, name if version == 1 else f"{name} {version}")


def is_service_owner(owner: UUID) -> bool:
    """A row of the service's own keys (any version up to a bound no rotation reaches)."""
    return owner in _service_owners()


@functools.cache
def _service_owners() -> frozenset[UUID]:
    return frozenset(service_owner(n, v) for n in SERVICE_KEYS for v in range(1, 1000))


_TAKES_OVER = 8  # a later version's row wraps the microsecond it takes over, then the key


class WrappedDataKeys:
    """application.ports.DataKeys over a DataKeyTable, keys wrapped under SECRET_KEY (Keyring)."""

    def __init__(self, keyring: Keyring, table: DataKeyTable | None = None) -> None:
        self._keyring = keyring
        self._table = table or DataKeyTable()
        self._fingerprints: ServiceKey | None = None
        self._now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._cache: OrderedDict[UUID, tuple[AESGCM | None, float]] = OrderedDict()
        self._lost: set[UUID] = set()  # owners with sealed values and no row (see _lose)
        self._lock = threading.Lock()
        if table is not None:
            self._open_service_keys()

    def keep_in(self, table: DataKeyTable, recorded: int = 0) -> None:
        """Where the keys live, for a table that needs the event store's connections (which
        exist only once the EventLog that uses these keys does). Opens the service's own keys
        there at once: a SECRET_KEY that opens none of them is refused before any use, and so
        is a table that holds nothing while the event store has `recorded` events."""
        if recorded and table.is_empty():
            table.close()
            raise KeyStoreEmpty(table.where, recorded)
        self._table = table
        self._open_service_keys()

    def service_keys(self, name: str, now: Callable[[], datetime]) -> ServiceKey:
        """Every live version of the key, read again as later ones are made or old ones go."""
        return ServiceKey(name, lambda: self.service_versions(name), now)

    def service_versions(self, name: str) -> list[KeyVersion]:
        """The key's live versions, oldest first (version 1 as the store always held it)."""
        live: list[KeyVersion] = []
        first = self._table.get(service_owner(name))
        if first is None or first[0] is not None:
            live.append(KeyVersion(1, self._service_key(name), BEGINNING))
        number = 2
        while (row := self._table.get(service_owner(name, number))) is not None:
            if row[0] is not None:
                opened = self._keyring.unwrap(service_owner(name, number), row[0]).key
                micros = int.from_bytes(opened[:_TAKES_OVER], "big")
                takes_over = datetime.fromtimestamp(micros / 1_000_000, UTC)
                live.append(KeyVersion(number, opened[_TAKES_OVER:], takes_over))
            number += 1
        return live

    def add_service_version(self, name: str, takes_over: datetime) -> KeyVersion:
        """A new version after the newest (live or destroyed); two runs racing make one."""
        number = 2
        while self._table.get(service_owner(name, number)) is not None:
            number += 1
        owner = service_owner(name, number)
        micros = int(takes_over.timestamp() * 1_000_000)
        plain = micros.to_bytes(_TAKES_OVER, "big") + os.urandom(32)
        self._table.insert(owner, self._keyring.wrap(owner, plain))
        self._fingerprints = None  # this process reads the versions again at once
        return next(v for v in self.service_versions(name) if v.number == number)

    def destroy_service_version(self, name: str, number: int) -> None:
        """That version forgotten for good: nothing it made opens or verifies again."""
        self._table.forget(service_owner(name, number), time.time())
        self._fingerprints = None  # this process reads the versions again at once

    def _open_service_keys(self) -> None:
        """Every live version of each service key opens (WrongSecretKey otherwise), and there
        is one (version 1 is made here, on a store's first start, and destroyed only after a
        later one exists)."""
        for name in SERVICE_KEYS:
            if not self.service_versions(name):
                raise WrongSecretKey(f" (the key table has no {name} key and takes none)")

    def _service_key(self, name: str) -> bytes:
        owner = service_owner(name)
        row = self._table.get(owner)
        if row is None:
            # Made once, by the first process to need it (the first insert wins, the others
            # read it), as releases before the key table derived it on every start: from the
            # SECRET_KEY that wraps the store's people's keys (a fallback's, during a rotation),
            # so a store written then keeps its fingerprints and can open what its events seal
            # (a migrated store's too).
            services = {service_owner(n) for n in SERVICE_KEYS}
            sample = next(
                (
                    found
                    for found in self._table.wrapped_keys(limit=len(services) + 1)
                    if found[0] not in services
                ),
                None,
            )
            secret = (
                self._keyring.current if sample is None else self._keyring.unwrap(*sample).secret
            )
            key = legacy_service_key(secret, name)
            self._table.insert(owner, self._keyring.wrap(owner, key))
            row = self._table.get(owner)
        if row is None or row[0] is None:
            raise WrongSecretKey(f" (the key table has no {name} key and takes none)")
        return self._keyring.unwrap(owner, row[0]).key

    def rekey(self) -> Rekeyed:
        """Wraps every key not wrapped under the current SECRET_KEY again under it."""
        rewrapped = current = forgotten = 0
        for owner, wrapped in self._table.wrapped_keys():
            opened = self._keyring.unwrap(owner, wrapped)
            if not opened.rewrap:
                current += 1
            elif self._table.replace(owner, wrapped, self._keyring.wrap(owner, opened.key)):
                rewrapped += 1
            else:
                forgotten += 1
        return Rekeyed(rewrapped, current, forgotten)

    def seal(self, owner: UUID, context: bytes, plaintext: bytes) -> bytes:
        if owner in self._lost:
            raise LostKey(owner)
        key = self._key(owner, create=True)
        if key is None:
            raise ForgottenOwner(str(owner))
        nonce = os.urandom(_NONCE)
        return nonce + key.encrypt(nonce, plaintext, context)

    def open(self, owner: UUID, context: bytes, sealed: bytes) -> bytes | None:
        key = self._key(owner, create=False)
        if key is None:
            return None
        return key.decrypt(sealed[:_NONCE], sealed[_NONCE:], context)

    def warm(self, owners: Collection[UUID]) -> None:
        now = time.monotonic()
        with self._lock:
            wanted = [
                owner
                for owner in set(owners)
                if (cached := self._cache.get(owner)) is None or cached[1] <= now
            ]
        if not wanted:
            return
        for owner, wrapped in self._table.get_many(wanted).items():
            self._remember(owner, wrapped, now)

    def forget(self, erased: Erased) -> None:
        owner = erased.account_id
        self._table.erase(owner, erased.at.timestamp(), erased.position, erased.claims)
        with self._lock:
            self._cache[owner] = (None, float("inf"))  # forgotten is for good

    def forgotten(self, owners: Collection[UUID]) -> set[UUID]:
        return self._table.forgotten(owners)

    def erasures(self) -> list[Erased]:
        return self._table.erasures()

    def last_erasure(self) -> Erased | None:
        return self._table.last_erasure()

    def unplaced_erasures(self) -> list[Erased]:
        return self._table.unplaced_erasures()

    def missing(self, owners: Collection[UUID]) -> set[UUID]:
        return set(owners) - set(self._table.get_many(owners))

    def holds_nothing(self) -> bool:
        """The key store holds no row at all (see KeyStoreEmpty)."""
        return self._table.is_empty()

    def fingerprint(self, kind: str, value: str) -> str:
        # Under the version that has taken over, as every process switches at one instant: a
        # rate limit's bucket is not split between two versions.
        return _fingerprint(*self._fingerprint_keys().current(), kind, value)

    def fingerprints(self, kind: str, value: str) -> list[str]:
        return [
            _fingerprint(version.number, version.key, kind, value)
            for version in reversed(self._fingerprint_keys().versions())
        ]

    def use_clock(self, now: Callable[[], datetime]) -> None:
        """The time versions of the service keys are read again by (the service's clock)."""
        self._now = now

    def _fingerprint_keys(self) -> ServiceKey:
        keys = self._fingerprints
        if keys is None:
            keys = self._fingerprints = self.service_keys(FINGERPRINTS, lambda: self._now())
        return keys

    def _key(self, owner: UUID, create: bool) -> AESGCM | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(owner)
            if cached is not None and cached[1] > now:
                self._cache.move_to_end(owner)
                return cached[0]
        row = self._table.get(owner)
        if row is None and create:
            self._table.insert(owner, self._wrapped(owner, os.urandom(32)))
            row = self._table.get(owner)  # another process may have made it first: theirs
        if row is None:
            if not create:
                self._lose(owner)
            return None  # nothing to open, nothing to cache
        return self._remember(owner, row[0], now)

    def _lose(self, owner: UUID) -> None:
        """A value of the owner's is sealed, yet the store holds no row for them: said once per
        process, and nothing more is sealed for them (LostKey)."""
        with self._lock:
            if owner in self._lost:
                return
            self._lost.add(owner)
        log.error("%s", LostKey(owner))

    def _remember(self, owner: UUID, wrapped: bytes | None, now: float) -> AESGCM | None:
        """The owner's key from its table row (None: forgotten), cached from `now` on."""
        key = None if wrapped is None else AESGCM(self._unwrapped(owner, wrapped))
        with self._lock:
            self._cache[owner] = (key, float("inf") if key is None else now + CACHE_SECONDS)
            self._cache.move_to_end(owner)
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return key

    def _wrapped(self, owner: UUID, key: bytes) -> bytes:
        return self._keyring.wrap(owner, key)

    def _unwrapped(self, owner: UUID, wrapped: bytes) -> bytes:
        return self._keyring.unwrap(owner, wrapped).key

    def close(self) -> None:
        self._table.close()
