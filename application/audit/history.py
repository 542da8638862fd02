"""What auditors ask of the event store: an account at a past instant, its history, the whole
trail exported and verified. Read-only; every event shown goes through `trail_entry`, which
leaves secrets out."""

from __future__ import annotations

import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification
from eventsourcing.utils import resolve_topic

from application.audit.trail import READ_FIELDS, TrailEntry, entry_of, is_trail_topic, trail_entry
from application.audit.trail_export import VerifyResult, chained, verify
from application.persistence.event_log import EventLog, LogHeldBack
from application.persistence.sealing import SEALS, SealingMapper, open_fields, sealed_owners
from application.persistence.transcoding import FastJSONTranscoder
from application.views import AccountState
from domain.account import Account
from domain.errors import AccountNotFound
from domain.session import Session

Event = DomainEventProtocol[Any]


class History:
    def __init__(self, log: EventLog, batch_size: int = 500, known_sessions: int = 10_000) -> None:
        self._log = log
        self._batch_size = batch_size  # events read per query: memory stays flat however long
        self._known_sessions = known_sessions  # session -> account ids kept while exporting

    def account_id(self, id_or_login: str) -> UUID:
        """The account named by its id, email or username; AccountNotFound when none is. An
        erased account is named by its id alone (its email and username are forgotten), and
        its history is still there to read."""
        with contextlib.suppress(ValueError):
            account_id = UUID(id_or_login)
            with contextlib.suppress(AggregateNotFoundError):
                if isinstance(self._log.repository.get(account_id), Account):
                    return account_id
        account = self._log.account_named(id_or_login)
        if account is None:
            raise AccountNotFound(id_or_login)
        return account.id

    def state_as_of(self, account_id: UUID, instant: datetime) -> AccountState:
        """The account rebuilt from its events recorded at or before `instant` (a naive time is
        taken as UTC). AccountNotFound for an unknown id or an instant before registration.

        The events applied are the longest prefix of the account's stream whose times are all at
        or before the instant: a later event never leaks in, even if clocks disagreed.
        """
        instant = _aware(instant)
        version: int | None = None
        for event in self._stream(account_id):
            recorded_at: datetime = vars(event)["timestamp"]
            if recorded_at > instant:
                break
            version = event.originator_version
        if version is None:
            raise AccountNotFound(str(account_id))
        account: object = self._log.repository.get(account_id, version=version)
        if not isinstance(account, Account):
            raise AccountNotFound(str(account_id))
        state = AccountState.of(account, instant)
        if self._log.keys.forgotten([account_id]):
            # Asked of the key store itself: a key this process still caches may be destroyed.
            return state.erased()
        return state

    def replay(self, account_id: UUID) -> Iterator[TrailEntry]:
        """The account's own events, oldest first, as trail entries (`position` None: the
        account's stream does not know its place in the store). Logins, refreshes and logouts are
        events of Session aggregates, not of the account: they are in the trail and the export.
        AccountNotFound, raised at once, for an id that is not an account's."""
        events = self._stream(account_id)
        first = next(events, None)
        if not isinstance(first, Account.Event):
            raise AccountNotFound(str(account_id))
        erased = bool(self._log.keys.forgotten([account_id]))
        entries = (trail_entry(event, None) for event in itertools.chain([first], events))
        return (entry.erased() if erased else entry for entry in entries)

    def trail(self, since: datetime | None = None) -> Iterator[TrailEntry]:
        """Every Account and Session event in store order, at or after `since` when given, up to
        the last one recorded when the read began. Reads in batches, in constant memory.

        A Session event other than SessionStarted does not name its account: the session's
        account is remembered from its start in a bounded cache, or loaded on a miss. The store
        is not indexed by time, so `since` skips earlier events as it reads them.
        """
        since = None if since is None else _aware(since)
        recorder = self._log.recorder
        last = self._log.end()
        owners = _SessionOwners(self._log, self._known_sessions)
        entries_of = self._entries_reader(owners)

        def batches() -> Iterator[Sequence[Notification]]:
            start = 1
            while start <= last:
                batch = recorder.select_notifications(
                    start=start, limit=self._batch_size, stop=last
                )
                if not batch:  # `last` is a recorded event: something holds it back
                    raise LogHeldBack(start - 1, last)
                yield batch
                start = batch[-1].id + 1

        for batch in batches():
            # A uniqueness claim is not decoded at all.
            entries = entries_of([n for n in batch if is_trail_topic(n.topic)])
            # Asked of the key store itself, a batch at a time: a key this process still
            # caches may have been destroyed by another.
            erased = self._log.keys.forgotten(
                {e.account_id for e in entries if e.sealed and e.account_id is not None}
            )
            for found in entries:
                if since is None or found.time >= since:
                    yield found.erased() if found.account_id in erased else found

    def _entries_reader(
        self, owners: _SessionOwners
    ) -> Callable[[Sequence[Notification]], list[TrailEntry]]:
        """Notifications -> their trail entries. Where the store holds the library's plain JSON
        (no cipher, no compression) and the event class has never been upcast, only the fields
        the trail shows are parsed (application.persistence.transcoding); otherwise the whole event is
        decoded. The keys of every person whose values a batch shows are read at once."""
        mapper = self._log.mapper
        keys = self._log.keys
        transcoder = mapper.transcoder
        read = (
            transcoder.fields_decoder(READ_FIELDS)
            if isinstance(transcoder, FastJSONTranscoder)
            and mapper.cipher is None
            and mapper.compressor is None
            else None
        )

        def fast(topic: str) -> bool:
            return read is not None and getattr(resolve_topic(topic), "class_version", 1) == 1

        def entries(notifications: Sequence[Notification]) -> list[TrailEntry]:
            states = {n.id: read(n.state) for n in notifications if read and fast(n.topic)}
            keys.warm({owner for state in states.values() for owner in sealed_owners(state)})
            slow = [n for n in notifications if n.id not in states]
            events = dict(zip([n.id for n in slow], _decoded(mapper, slow), strict=True))
            found = []
            for notification in notifications:
                event = events.get(notification.id)
                if event is None:
                    found.append(entry(notification, states[notification.id]))
                else:
                    found.append(trail_entry(event, notification.id, owners.of(event)))
            return found

        def entry(notification: Notification, state: dict[str, Any]) -> TrailEntry:
            aggregate, _, name = notification.topic.partition(":")[2].partition(".")
            opened = open_fields(state, keys)
            if opened:
                state[SEALS] = opened
            session_id = _uuid(notification.originator_id)
            account_id = None
            if aggregate == "Session":
                account_id = owners.owner(session_id, state.get("account_id"))
            return entry_of(
                aggregate,
                name,
                session_id,
                notification.originator_version,
                state,
                notification.id,
                account_id,
            )

        return entries

    def export(self, since: datetime | None = None) -> Iterator[str]:
        """The trail as hash-chained JSON lines (see application.audit.trail_export). With `since`,
        the chain starts afresh, at GENESIS, from the first line exported."""
        return chained(self.trail(since))

    @staticmethod
    def verify(lines: Iterable[str]) -> VerifyResult:
        return verify(lines)

    def _stream(self, aggregate_id: UUID) -> Iterator[Event]:
        """An aggregate's events, oldest first, read a batch at a time."""
        after: int | None = None
        while True:
            batch = list(self._log.events.get(aggregate_id, gt=after, limit=self._batch_size))
            yield from batch
            if len(batch) < self._batch_size:
                return
            after = batch[-1].originator_version


class _SessionOwners:
    """Which account each session belongs to: the most recently seen ones kept, the rest loaded
    from their session when asked, so a trail of millions of sessions needs bounded memory."""

    def __init__(self, log: EventLog, size: int) -> None:
        self._log = log
        self._size = size
        self._accounts: OrderedDict[UUID, UUID | None] = OrderedDict()

    def of(self, event: Event) -> UUID | None:
        """The account of a Session event (None for any other event)."""
        if not isinstance(event, Session.Event):
            return None
        started_by = event.account_id if isinstance(event, Session.SessionStarted) else None
        return self.owner(event.originator_id, started_by)

    def owner(self, session_id: UUID, started_by: UUID | None) -> UUID | None:
        """The account of a session; `started_by` is the account a SessionStarted names."""
        if started_by is not None:
            account_id: UUID | None = started_by
        elif session_id in self._accounts:
            self._accounts.move_to_end(session_id)
            return self._accounts[session_id]
        else:
            session = self._log.find(session_id, Session)
            account_id = None if session is None else session.account_id
        self._accounts[session_id] = account_id
        if len(self._accounts) > self._size:
            self._accounts.popitem(last=False)
        return account_id


def _decoded(mapper: Any, notifications: Sequence[Notification]) -> list[Event]:
    """Whole events (an upcast class, or a store the fast path cannot parse)."""
    if isinstance(mapper, SealingMapper):
        return mapper.to_domain_events(notifications)
    return [mapper.to_domain_event(notification) for notification in notifications]


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _aware(instant: datetime) -> datetime:
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
