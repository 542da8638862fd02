"""What a projection is to the projector that feeds it."""

from __future__ import annotations

from typing import Any, Protocol

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder


class Projection(Protocol):
    name: str
    topics: tuple[str, ...]  # the event classes it wants; empty means all

    @property
    def view(self) -> TrackingRecorder: ...

    def process_event(self, domain_event: DomainEventProtocol[Any], tracking: Tracking) -> None:
        """Applies the event and records `tracking` with it, so a restart resumes after it."""
        ...
