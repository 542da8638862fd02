"""The webhook feed: a projection of the log that records, for each public event, one delivery
per endpoint that wants it, in the same transaction as its tracking record, then wakes a courier
for each lane it added to. A replay records the same deliveries for one endpoint, from a point
in the log, under ids of its own.

Each delivery's body is fixed when it is recorded (so every try sends the same one), except the
person's values: those are kept sealed under the person's data key and opened at each try, so an
erasure in between removes them from what is still to be sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

import msgspec
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.persistence.event_log import EventLog
from application.ports import Clock, WebhookQueue
from application.read_side.read_seals import ReadSeals
from application.webhooks.records import QueuedDelivery, WebhookLedger, messages
from domain.session import Session
from domain.webhook import WebhookEndpoint
from domain.webhook_events import PUBLISHED, PublicEvent, account_of, public_event

log = logging.getLogger(__name__)

# Where in the read seals a delivery's personal values are bound (no other place opens them).
PERSONAL_PLACE = "webhook_deliveries.personal"


def message_id(scope: UUID, event: DomainEventProtocol[Any]) -> str:
    """The webhook-id of an event's delivery: stable for one event and one endpoint (or one
    replay), so a receiver that drops the ids it has seen drops a retry, and takes a replay."""
    return "msg_" + uuid5(scope, f"{event.originator_id}:{event.originator_version}").hex


class Publication:
    """Turns events into deliveries: which endpoints want each, with which body."""

    def __init__(self, log: EventLog, seals: ReadSeals) -> None:
        self._log = log
        self._seals = seals

    def deliveries(
        self,
        events: Iterable[tuple[DomainEventProtocol[Any], int]],
        endpoints: Sequence[WebhookEndpoint],
        replay_id: UUID | None = None,
    ) -> list[QueuedDelivery]:
        made: list[QueuedDelivery] = []
        sessions: dict[UUID, UUID] = {}
        for event, position in events:
            public = self._published(event, sessions)
            if public is None:
                continue
            wanting = [
                e
                for e in endpoints
                # An endpoint is fed what happened since it was made; a replay, what it asks.
                if (replay_id is not None or e.created_on <= public.timestamp)
                and e.settings.wants(public.type)
            ]
            if not wanting:
                continue
            body = msgspec.json.encode(public.body(None)).decode()
            sealed = ""
            if public.personal and any(e.settings.include_personal for e in wanting):
                sealed = self._seals.seal(public.account_id, PERSONAL_PLACE, public.personal)
            for endpoint in wanting:
                made.append(
                    QueuedDelivery(
                        id=message_id(replay_id or endpoint.id, event),
                        endpoint_id=str(endpoint.id),
                        account_id=str(public.account_id),
                        position=position,
                        type=public.type,
                        body=body,
                        sealed_personal=sealed if endpoint.settings.include_personal else "",
                        replay_id=None if replay_id is None else str(replay_id),
                    )
                )
        return made

    def _published(
        self, event: DomainEventProtocol[Any], sessions: dict[UUID, UUID]
    ) -> PublicEvent | None:
        account_id = account_of(event)
        if account_id is None:
            account_id = self._session_account(event.originator_id, sessions)
        if account_id is None:
            return None
        return public_event(event, account_id)

    def _session_account(self, session_id: UUID, known: dict[UUID, UUID]) -> UUID | None:
        """A later session event's account: its session's, read once a batch."""
        if session_id not in known:
            session = self._log.find(session_id, Session)
            if session is None:
                return None
            known[session_id] = session.account_id
        return known[session_id]


class WebhookFeed:
    name = "webhook_outbox"
    topics: tuple[str, ...] = tuple(get_topic(kind) for kind in PUBLISHED)

    def __init__(
        self,
        view: Any,
        publication: Publication,
        endpoints: Any,  # WebhookEndpoints: live()
        queue: WebhookQueue,
        clock: Clock,
    ) -> None:
        self._ledger: WebhookLedger = view
        self._view: TrackingRecorder = view
        self._publication = publication
        self._endpoints = endpoints
        self._queue = queue
        self._clock = clock

    @property
    def view(self) -> TrackingRecorder:
        return self._view

    def process_events(
        self, events: Sequence[tuple[DomainEventProtocol[Any], int]], tracking: Tracking
    ) -> None:
        # A disabled endpoint is fed nothing new; a replay fills its gap once it is mended.
        endpoints = [e for e in self._endpoints.live() if e.enabled] if events else []
        made = self._publication.deliveries(events, endpoints) if endpoints else []
        self._ledger.record(made, self._clock.now(), tracking)
        # After the commit: a message without its row can never exist. One lost between the
        # two (a crash, a broker that refused) is sent again by resume() or the sweep.
        for lanes in messages(d.lane for d in made):
            self._queue.enqueue(lanes)

    def resume(self) -> None:
        """Called by the projector each time it takes this projection: the last rows recorded
        may have missed their message."""
        self.wake_due()

    def wake_due(self, at: datetime | None = None, quiet_for: timedelta = timedelta(0)) -> int:
        """Wakes a courier for each lane whose head is due: a retry's time come, a message
        lost, a claim run out. Duplicates are harmless (a head is claimed once), but not free:
        a periodic sweep passes `quiet_for` to leave the lanes their own message has just
        woken (a head recorded, failed or released less than that ago)."""
        lanes = self._ledger.due_lanes(at or self._clock.now(), quiet_for=quiet_for)
        for group in messages(lanes):
            self._queue.enqueue(group)
        return len(lanes)
