"""A key store of its own, named by KEY_STORE_URL: a PostgreSQL database (another database, or
another cluster) or a SQLite file, so that a copy of the event database alone opens no personal
value; and moving the keys there from beside the events (where each deployment profile keeps
them by default: interfaces/stores/)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import conninfo_to_dict

from infrastructure.data_keys import DataKeyTable, PostgresDataKeyTable, SqliteDataKeyTable

_POSTGRES = ("postgresql://", "postgres://")


class KeysNotMoved(Exception):
    """move_keys refused: nothing to move, nowhere else to move it, or a target in use."""


def is_postgres(url: str) -> bool:
    return url.startswith(_POSTGRES)


def key_store(url: str) -> DataKeyTable:
    """The key table in the store KEY_STORE_URL names: a PostgreSQL database, or a SQLite file
    (a path, or sqlite:///path)."""
    if is_postgres(url):
        return PostgresDataKeyTable(key_store_datastore(url), owned=True, where=describe(url))
    return SqliteDataKeyTable(Path(url.removeprefix("sqlite:///")))


def key_store_datastore(url: str) -> PostgresDatastore:
    """A small pool of the key store's own: keys are read once per person and cached
    (infrastructure/data_keys.py), so few connections serve a whole process."""
    parts = conninfo_to_dict(url)
    return PostgresDatastore(
        dbname=str(parts.get("dbname", "")),
        host=str(parts.get("host", "localhost")),
        port=str(parts.get("port", "5432")),
        user=str(parts.get("user", "")),
        password=str(parts.get("password", "")),
        connect_timeout=2,
        pool_size=2,
        max_overflow=8,
        pre_ping=True,
    )


def describe(url: str | None) -> str:
    """Where the keys are, for messages: never the URL's password."""
    if url is None:
        return "the event store's database"
    if is_postgres(url):
        parts = conninfo_to_dict(url)
        return f"PostgreSQL database {parts.get('dbname', '')!r} on {parts.get('host', '')}"
    return f"SQLite file {url.removeprefix('sqlite:///')}"


def move_keys(events_url: str | None, key_store_url: str | None, default_file: Path) -> int:
    """Moves the key table and the ledger from beside the events (DATABASE_URL's database, or
    `default_file`) into the key store KEY_STORE_URL names, then removes them from beside the
    events: from then on a copy of the event database alone opens nothing. Run with every
    tessera process stopped. The number of rows moved."""
    if key_store_url is None:
        raise KeysNotMoved("KEY_STORE_URL is not set: it names where the keys go")
    same = (
        key_store_url == events_url
        if is_postgres(key_store_url)
        else events_url is None and Path(key_store_url).resolve() == default_file.resolve()
    )
    if same:
        raise KeysNotMoved("KEY_STORE_URL names the store the keys are already in")
    if events_url is None and not default_file.is_file():
        raise KeysNotMoved(f"no keys beside the events to move ({default_file} does not exist)")
    if events_url is not None and not _has_key_table(events_url):
        raise KeysNotMoved("no keys beside the events to move (the database has no key table)")
    source = (
        PostgresDataKeyTable(key_store_datastore(events_url), owned=True)
        if events_url is not None
        else SqliteDataKeyTable(default_file)
    )
    target = key_store(key_store_url)
    try:
        if source.is_empty():
            raise KeysNotMoved("no keys beside the events to move")
        if not target.is_empty():
            raise KeysNotMoved(f"the key store ({describe(key_store_url)}) already holds keys")
        rows = source.rows()
        target.load(rows, source.erasures())
        if len(target.rows()) != len(rows):
            raise KeysNotMoved("the key store did not take every key: nothing was removed")
    except BaseException:
        source.close()
        raise
    finally:
        target.close()
    source.drop()
    return len(rows)


def _has_key_table(url: str) -> bool:
    """Asked before a PostgresDataKeyTable is made there, which would create an empty one."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (PostgresDataKeyTable.table,)).fetchone()
    return row is not None and row[0] is not None
