"""Indexes added to PostgreSQL tables that may already be large and in use."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

# One tessera process at a time builds or repairs an index, by this advisory lock.
_BUILDING = "SELECT pg_try_advisory_lock(hashtext('tessera:index-build'))"
_BUILT = "SELECT pg_advisory_unlock(hashtext('tessera:index-build'))"


def build_concurrently(conn: psycopg.Connection[Any], name: str, table: str, column: str) -> None:
    """The index, built CONCURRENTLY: a plain build would hold off every write to the table
    while it read the table whole. A concurrent build that was interrupted (its process killed)
    leaves an INVALID index, which no query uses and which IF NOT EXISTS would keep for ever:
    it is dropped and built again.

    Processes that start together (replicas of a deployment) build one at a time: a concurrent
    build waits out every other session's snapshot, and a second build waiting for the table
    holds one, so two at once deadlock (and the one aborted leaves its index INVALID). A process
    that finds another building goes on without waiting, rather than holding a snapshot of its
    own while it waits: the index is being made, and a build that dies is repaired at a later
    start."""
    previous, conn.autocommit = conn.autocommit, True  # CONCURRENTLY runs outside one
    try:
        held = conn.execute(_BUILDING).fetchone()
        if not (held and held[0]):
            return
        try:
            if _invalid(conn, name):
                conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
                )
            conn.execute(
                sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(name), sql.Identifier(table), sql.Identifier(column)
                )
            )
        finally:
            conn.execute(_BUILT)
    finally:
        conn.autocommit = previous


def _invalid(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute(
        "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (name,)
    ).fetchone()
    return bool(row and row[0])
