"""Feeds a projection from the event log, resuming after the last position it tracked."""

from __future__ import annotations

import logging
import threading
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking

from application.projection import Projection
from infrastructure.lease import NoLease, PostgresLease

Lease = NoLease | PostgresLease

log = logging.getLogger(__name__)


class Projector:
    """Polls the application's notification log.

    Polling, rather than the library's subscriptions, because its SQLite recorder has none and one
    loop serves both stores. Each event is processed and tracked before the next is read, so a
    crash anywhere replays at most the event in hand, which projections make idempotent.
    """

    def __init__(
        self,
        app: Application[Any],
        projection: Projection,
        lease: Lease | None = None,
        batch_size: int = 100,
    ) -> None:
        self._app = app
        self._projection = projection
        self._lease = lease or NoLease()
        self._batch_size = batch_size

    @property
    def name(self) -> str:
        return self._projection.name

    @property
    def position(self) -> int:
        return self._projection.view.max_tracking_id(self._app.name) or 0

    def run_once(self) -> int:
        """Processes the next batch; returns how many events it read."""
        notifications = self._app.recorder.select_notifications(
            start=self.position + 1,
            limit=self._batch_size,
            topics=self._projection.topics,
        )
        for notification in notifications:
            domain_event = self._app.mapper.to_domain_event(notification)
            self._projection.process_event(domain_event, Tracking(self._app.name, notification.id))
        return len(notifications)

    def run_until(self, stop: threading.Event, poll_interval: float = 0.1) -> None:
        try:
            self._run_until(stop, poll_interval)
        finally:
            self._lease.release()

    def _run_until(self, stop: threading.Event, poll_interval: float) -> None:
        while not stop.is_set():
            if not self._lease.held():
                stop.wait(1.0)  # another process runs this projection: stand by
                continue
            try:
                read = self.run_once()
            except Exception:
                # A database or transport outage: log it and try again, never die silently.
                log.exception("projection %s failed; retrying", self._projection.name)
                stop.wait(1.0)
                continue
            if read < self._batch_size:
                stop.wait(poll_interval)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(
            target=self.run_until, args=(stop,), name=f"projector-{self._projection.name}"
        )
        thread.daemon = True
        thread.start()
        return thread
