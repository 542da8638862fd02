"""Indexes added to PostgreSQL tables that may already be large and in use."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql


def build_concurrently(conn: psycopg.Connection[Any], name: str, table: str, column: str) -> None:
    """The index, built CONCURRENTLY: a plain build would hold off every write to the table
    while it read the table whole. A concurrent build that was interrupted (its process killed,
    a deadlock with another) leaves an INVALID index, which no query uses and which IF NOT
    EXISTS would keep for ever: unless a session is building it now, it is dropped and built
    again."""
    previous, conn.autocommit = conn.autocommit, True  # CONCURRENTLY runs outside one
    try:
        if _interrupted(conn, name):
            conn.execute(
                sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
            )
        conn.execute(
            sql.SQL("CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(name), sql.Identifier(table), sql.Identifier(column)
            )
        )
    finally:
        conn.autocommit = previous


def _interrupted(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute(
        "SELECT NOT i.indisvalid AND NOT EXISTS ("
        "  SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)"
        " FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
        (name,),
    ).fetchone()
    return bool(row and row[0])
