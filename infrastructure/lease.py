"""Which process runs a projection: one at a time, the others standing by (and a rebuild
waiting until none runs it).

A PostgreSQL session-level advisory lock is held on a connection of its own; when the holder dies
its connection closes, the lock is released, and a standby takes over within a poll interval.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import IO

import psycopg

log = logging.getLogger(__name__)


class PostgresLease:
    def __init__(self, conninfo: str, name: str) -> None:
        self._conninfo = conninfo
        self._name = name
        digest = hashlib.sha256(f"tessera-projection:{name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
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
                    "SELECT pg_try_advisory_lock(%s)", (self.key,)
                ).fetchone()
                if not (row and row[0]):
                    self._connection.close()
                    self._connection = None
                    return False
                log.info("lease %s: this process holds it", self._name)
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


class FileLease:
    """The embedded default's lease: an exclusive lock on a file beside the SQLite database,
    released by the operating system when its holder exits, however it exits."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    def held(self) -> bool:
        if self._file is not None:
            return True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        file = self._path.open("ab")
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.close()
            return False
        self._file = file
        return True

    def release(self) -> None:
        if self._file is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            finally:
                self._file.close()
                self._file = None
