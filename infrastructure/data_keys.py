"""Each person's data key, in a table of its own beside the events, wrapped by SECRET_KEY.

A data key is 256 random bits, made the first time something of the person's is sealed and
stored wrapped (AES-GCM under a key derived from SECRET_KEY, bound to the owner's id; see
infrastructure/keyring.py, which also says how SECRET_KEY rotates). The service's own keys
(fingerprints, sealed values, refresh-token tags, CSRF) are rows of the same table. Forgetting
the person overwrites the wrapped key with nothing and keeps a tombstone, so nothing is sealed
for them again. On SQLite the table has a file of its own, written with secure_delete on and a
rollback journal (no write-ahead log that would keep old pages): a destroyed key leaves no bytes
behind in any file.

Keys are cached in the process for CACHE_SECONDS, so loading an aggregate or projecting a batch
does not ask the table once per event. Forgetting clears this process's cache at once; other
processes may still open the person's values in memory until their entry expires, while the
account already reads as erased everywhere (its last event says so) and every audit read asks the
table itself (`forgotten`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from application.ports import ForgottenOwner
from infrastructure.keyring import (
    FINGERPRINTS,
    SERVICE_KEYS,
    Keyring,
    WrongSecretKey,
    legacy_service_key,
)
from infrastructure.service_keys import BEGINNING, KeyVersion, ServiceKey

CACHE_SECONDS = 30.0
CACHE_SIZE = 10_000
_NONCE = 12  # NIST SP 800-38D's recommended IV length for GCM


_SERVICE_KEYS = UUID("7e55e7a0-5e7c-4e7a-9b1e-000000000000")  # namespace of service key rows


class DataKeyTable:
    """Where wrapped keys live: get, insert (first writer wins), forget, forgotten."""

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
        raise NotImplementedError

    def forgotten(self, owners: Collection[UUID]) -> set[UUID]:
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
            self._conn.execute(
                "INSERT INTO data_keys (owner, wrapped, forgotten_at) VALUES (?, NULL, ?)"
                " ON CONFLICT (owner) DO UPDATE SET wrapped = NULL,"
                " forgotten_at = coalesce(data_keys.forgotten_at, excluded.forgotten_at)",
                (str(owner), at),
            )

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
    """In the event store's database, through its connection pool."""

    table = "tessera_data_keys"

    def __init__(self, datastore: Any) -> None:
        self._datastore = datastore
        with datastore.transaction(commit=True) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table}"
                " (owner UUID PRIMARY KEY, wrapped BYTEA, forgotten_at DOUBLE PRECISION)"
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
            c.execute(
                f"INSERT INTO {self.table} AS k (owner, wrapped, forgotten_at)"  # noqa: S608
                " VALUES (%s, NULL, %s) ON CONFLICT (owner) DO UPDATE SET wrapped = NULL,"
                " forgotten_at = coalesce(k.forgotten_at, excluded.forgotten_at)",
                (owner, at),
            )

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
        pass


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


_TAKES_OVER = 8  # a later version's row wraps the microsecond it takes over, then the key


class WrappedDataKeys:
    """application.ports.DataKeys over a DataKeyTable, keys wrapped under SECRET_KEY (Keyring)."""

    def __init__(self, keyring: Keyring, table: DataKeyTable | None = None) -> None:
        self._keyring = keyring
        self._table = table or DataKeyTable()
        self._fingerprints: ServiceKey | None = None
        self._now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._cache: OrderedDict[UUID, tuple[AESGCM | None, float]] = OrderedDict()
        self._lock = threading.Lock()
        if table is not None:
            self._open_service_keys()

    def keep_in(self, table: DataKeyTable) -> None:
        """Where the keys live, for a table that needs the event store's connections (which
        exist only once the EventLog that uses these keys does). Opens the service's own keys
        there at once: a SECRET_KEY that opens none of them is refused before any use."""
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

    def forget(self, owner: UUID) -> None:
        self._table.forget(owner, time.time())
        with self._lock:
            self._cache[owner] = (None, float("inf"))  # forgotten is for good

    def forgotten(self, owners: Collection[UUID]) -> set[UUID]:
        return self._table.forgotten(owners)

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
            return None  # never sealed anything: nothing to open, nothing to cache
        return self._remember(owner, row[0], now)

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
