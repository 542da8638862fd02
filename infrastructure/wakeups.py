"""Waking projectors in other processes at once (PostgreSQL's LISTEN/NOTIFY), so a read that
waits for its caller's own writes pays the projection's work, not its poll interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import psycopg

from infrastructure.projector import Projector

CHANNEL = "tessera_projectors"
log = logging.getLogger(__name__)


class PostgresWakeups:
    """Only reads that must wait notify, never saves: a notifying commit takes a cluster-wide
    lock through its flush, which the event store's save path is built to avoid."""

    def __init__(self, datastore: Any, conninfo: str) -> None:
        self._datastore = datastore  # the event store's pool: a notify is one statement
        self._conninfo = conninfo

    def notify(self, projection: str) -> None:
        try:
            with self._datastore.get_connection() as conn:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, projection))
        except Exception:
            # The read still waits, bounded; the projector still polls.
            log.warning("could not wake the projector of %s", projection, exc_info=True)

    def listen(self, projectors: Iterable[Projector], stop: threading.Event) -> threading.Thread:
        """Nudges each named projector of this process when a read anywhere asks for it."""
        by_name = {projector.name: projector for projector in projectors}

        def run() -> None:
            while not stop.is_set():
                try:
                    with psycopg.connect(self._conninfo, autocommit=True) as conn:
                        conn.execute(f"LISTEN {CHANNEL}")
                        while not stop.is_set():
                            for notice in conn.notifies(timeout=1.0):
                                projector = by_name.get(notice.payload)
                                if projector is not None:
                                    projector.nudge()
                except psycopg.Error:
                    log.warning("projector wake-ups interrupted; listening again", exc_info=True)
                    stop.wait(1.0)

        thread = threading.Thread(target=run, name="projector-wakeups", daemon=True)
        thread.start()
        return thread
