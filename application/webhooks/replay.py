"""Replay: every event an endpoint wants since a point in the log, in order, sent again under
new webhook-ids (derived from the replay and the event), so a receiver that drops ids it has
seen takes them. What only an event-sourced service can do: a new endpoint can be given the
whole history.

A replay is recorded in batches behind a cursor kept in the ledger, each batch and the cursor's
move in one transaction: one whose process dies partway (or whose broker refused a message) is
taken up by the webhook sweep once its hold runs out, from where it stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification

from application.persistence.event_log import EventLog
from application.persistence.sealing import SealingMapper
from application.ports import Clock, WebhookQueue
from application.webhooks.endpoints import WebhookEndpoints
from application.webhooks.feed import Publication, WebhookFeed
from application.webhooks.records import ReplayCursor, WebhookLedger, messages
from domain.errors import FieldError, ReplayPastEnd, WebhookNotFound

# How long a process holds a replay it records: far more than a batch takes, so only a dead
# process's replay is taken up by another.
REPLAY_HOLD = timedelta(minutes=1)


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
        batch: int = 500,
    ) -> None:
        """`batch`: the log positions read (and recorded in one transaction) at a time."""
        self._batch = batch
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
        queued = 0
        if start <= end:  # else an empty log: nothing to record
            cursor = ReplayCursor(str(replay_id), str(endpoint.id), start, end)
            self._ledger.start_replay(cursor, now, REPLAY_HOLD)
            queued = self._record(cursor)
        return ReplayView(str(replay_id), start, end, queued)

    def resume(self) -> int:
        """Records the rest of every replay a process left unfinished (the webhook sweep
        calls it); returns the deliveries recorded."""
        queued = 0
        for cursor in self._ledger.claim_replays(self._clock.now(), REPLAY_HOLD):
            try:
                self._endpoints.find(cursor.endpoint_id)
            except WebhookNotFound:
                self._ledger.discard(cursor.endpoint_id)
                continue
            queued += self._record(cursor)
        return queued

    def _record(self, cursor: ReplayCursor) -> int:
        endpoint = self._endpoints.find(cursor.endpoint_id)
        queued, position, end = 0, cursor.next_position, cursor.until_position
        while position <= end:
            notifications = self._log.recorder.select_notifications(
                start=position, limit=self._batch, stop=end, topics=WebhookFeed.topics
            )
            events = zip(self._decode(notifications), [n.id for n in notifications], strict=True)
            made = self._publication.deliveries(events, [endpoint], UUID(cursor.replay_id))
            position = notifications[-1].id + 1 if notifications else end + 1
            self._ledger.record_replayed(
                made, cursor.replay_id, position, self._clock.now(), REPLAY_HOLD
            )
            # After the commit; a message lost here is sent by the sweep (its rows are due).
            for lanes in messages(d.lane for d in made):
                self._queue.enqueue(lanes)
            queued += len(made)
        return queued

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
