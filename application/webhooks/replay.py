"""Replay: every event an endpoint wants since a point in the log, in order, sent again under
new webhook-ids (derived from the replay and the event), so a receiver that drops ids it has
seen takes them. What only an event-sourced service can do: a new endpoint can be given the
whole history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import uuid4

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification

from application.persistence.event_log import EventLog
from application.persistence.sealing import SealingMapper
from application.ports import Clock, WebhookQueue
from application.webhooks.endpoints import WebhookEndpoints
from application.webhooks.feed import Publication, WebhookFeed
from application.webhooks.records import WebhookLedger, messages
from domain.errors import FieldError, ReplayPastEnd

_BATCH = 500


@dataclass(frozen=True)
class ReplayView:
    replay_id: str
    since_position: int  # the first log position replayed
    until_position: int  # the last: the log's end when the replay was asked for
    queued: int  # deliveries recorded


class Replays:
    def __init__(
        self,
        log: EventLog,
        endpoints: WebhookEndpoints,
        publication: Publication,
        ledger: WebhookLedger,
        queue: WebhookQueue,
        clock: Clock,
    ) -> None:
        self._log = log
        self._endpoints = endpoints
        self._publication = publication
        self._ledger = ledger
        self._queue = queue
        self._clock = clock

    def replay(self, endpoint_id: str, since: int | datetime, operator: str) -> ReplayView:
        """`since`: a log position (0 or 1: from the first event), or an instant (from the
        first event recorded at or after it). ReplayPastEnd when it lies past the log's end."""
        endpoint = self._endpoints.find(endpoint_id)
        end = self._log.end()
        start = self._start(since, end)
        replay_id = uuid4()
        now = self._clock.now()
        endpoint.replayed(replay_id, start, end, operator, now)
        self._endpoints.save(endpoint)
        queued, position = 0, start
        while position <= end:
            notifications = self._log.recorder.select_notifications(
                start=position, limit=_BATCH, stop=end, topics=WebhookFeed.topics
            )
            if not notifications:
                break
            events = zip(self._decode(notifications), [n.id for n in notifications], strict=True)
            made = self._publication.deliveries(events, [endpoint], replay_id)
            self._ledger.record(made, self._clock.now(), None)
            for lanes in messages(d.lane for d in made):
                self._queue.enqueue(lanes)
            queued += len(made)
            position = notifications[-1].id + 1
        return ReplayView(str(replay_id), start, end, queued)

    def _start(self, since: int | datetime, end: int) -> int:
        if isinstance(since, datetime):
            start = self._first_at_or_after(since, end)
            if start is None:
                raise ReplayPastEnd(FieldError("since", "past_end", "after the last event"))
            return start
        if since > end:
            raise ReplayPastEnd(FieldError("since", "past_end", f"the log ends at {end}"))
        return max(since, 1)

    def _first_at_or_after(self, instant: datetime, end: int) -> int | None:
        """The first position whose event was recorded at or after `instant` (the log is in
        time order): a binary search, a read of one event each step."""
        low, high, found = 1, end, None
        while low <= high:
            middle = (low + high) // 2
            (first,) = self._log.recorder.select_notifications(start=middle, limit=1) or (None,)
            if first is None or first.id > end:
                high = middle - 1
                continue
            if self._timestamp(first) >= instant:
                found, high = first.id, middle - 1
            else:
                low = first.id + 1
        return found

    def _timestamp(self, notification: Notification) -> datetime:
        when: datetime = self._log.mapper.to_domain_event(notification).timestamp  # type: ignore[attr-defined]
        return when

    def _decode(self, notifications: Sequence[Notification]) -> list[DomainEventProtocol[Any]]:
        mapper = self._log.mapper
        if isinstance(mapper, SealingMapper):
            return mapper.to_domain_events(notifications)
        return [mapper.to_domain_event(n) for n in notifications]
