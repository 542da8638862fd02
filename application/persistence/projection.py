"""What a projection is to the projector that feeds it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder


class Projection(Protocol):
    name: str
    topics: tuple[str, ...]  # the event classes it wants; empty means all

    @property
    def view(self) -> TrackingRecorder: ...

    def process_events(
        self, events: Sequence[tuple[DomainEventProtocol[Any], int]], tracking: Tracking
    ) -> None:
        """Applies the events (each with its position in the store, in store order) and records
        `tracking`, the position of the last event read, which may be past the last event given:
        a restart resumes after it. A projection whose writes are not one transaction records
        each event's own position with it, so a crash anywhere still resumes exactly."""
        ...
