"""Which process runs a projection: one at a time, the others standing by.

A PostgreSQL session-level advisory lock is held on a connection of its own; when the holder dies
its connection closes, the lock is released, and a standby takes over within a poll interval.
"""

from __future__ import annotations

import hashlib
import logging
import os

import psycopg

log = logging.getLogger(__name__)


class PostgresLease:
    def __init__(self, conninfo: str, name: str) -> None:
        self._conninfo = conninfo
        self._name = name
        digest = hashlib.sha256(f"tessera-projection:{name}".encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None

    def held(self) -> bool:
        """True while this process holds the lease (taking it if free); False otherwise."""
        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(
                    self._conninfo,
                    autocommit=True,
                    # Names the holder's process for operators (and tests) reading pg_stat_activity.
                    application_name=f"tessera-lease:{os.getpid()}",
                )
                row = self._connection.execute(
                    "SELECT pg_try_advisory_lock(%s)", (self._key,)
                ).fetchone()
                if not (row and row[0]):
                    self._connection.close()
                    self._connection = None
                    return False
                log.info("projection %s: this process holds the lease", self._name)
                return True
            self._connection.execute("SELECT 1")  # still connected, so still holding it
            return True
        except psycopg.Error:
            self.release()
            return False

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None


class NoLease:
    """The embedded default runs every projection in its one process."""

    def held(self) -> bool:
        return True

    def release(self) -> None:
        pass
