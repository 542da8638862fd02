"""Copying a store written before personal values were sealed into one that seals them.

An event cannot be changed in place, so a store whose events hold personal values in plain text
stays that way: erasure could only delete read-model rows. The migration reads every event of
the old store in store order and records it again through the EventLog, whose SealingMapper
seals each personal field under the data key of the account it belongs to. The only events it
rewrites are the claims: in the old store a claim's id was derived from the address or username
itself and its event carried the value; now the id comes from a keyed fingerprint of the value,
and the event holds none.

Ids, versions, timestamps and topics are kept; snapshots are not copied (they are taken again
as aggregates grow). See `tessera migrate` (interfaces.migrate_cli).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    ApplicationRecorder,
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    Notification,
    UUIDAsHex,
)

from application.persistence.event_log import EventLog
from application.persistence.sealing import OWNER, Sealed, SealedAsText
from application.persistence.transcoding import FastJSONTranscoder
from application.ports import DataKeys
from domain.account import (
    EMAIL_NAMESPACE,
    USERNAME_NAMESPACE,
    Account,
    EmailClaim,
    UsernameClaim,
)
from domain.session import Session

BATCH = 500  # events read, transformed and saved together (one transaction in the target)


class MigrationRefused(Exception):
    """The source or the target is not what a migration can start from."""


def old_format_mapper() -> Mapper[UUID]:
    """Decodes the old store's events: the EventLog's transcodings, no sealing. Sealed values
    are decoded too (as Sealed), so a store that was already migrated is recognised."""
    transcoder: JSONTranscoder = FastJSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), SealedAsText()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


class Rewriter:
    """Turns the old store's events, in store order, into the events the target records, each
    stamped with the account whose data key seals its personal values."""

    _claims: tuple[tuple[type[EmailClaim] | type[UsernameClaim], str, UUID], ...] = (
        (EmailClaim, "email", EMAIL_NAMESPACE),
        (UsernameClaim, "username", USERNAME_NAMESPACE),
    )

    def __init__(self, keys: DataKeys) -> None:
        self._keys = keys
        self._session_owners: dict[UUID, UUID] = {}  # learnt from each SessionStarted
        self._claim_ids: dict[UUID, UUID] = {}  # an old claim's id: its new one

    def rewrite(self, event: DomainEventProtocol[UUID]) -> DomainEventProtocol[UUID]:
        state = dict(vars(event))
        if any(isinstance(value, Sealed) for value in state.values()):
            raise MigrationRefused(
                f"event {event.originator_id} v{event.originator_version} is sealed already:"
                " the source was written by this version (migrated already?)"
            )
        for kind, field, namespace in self._claims:
            if isinstance(event, kind.Event):
                state = self._new_claim(event, state, field, namespace)
                break
        state[OWNER] = self._owner(event, state)
        rewritten = object.__new__(type(event))
        object.__setattr__(rewritten, "__dict__", state)
        return rewritten

    def _new_claim(
        self,
        event: DomainEventProtocol[UUID],
        state: dict[str, Any],
        field: str,
        namespace: UUID,
    ) -> dict[str, Any]:
        """A claim's event under the id the fingerprint of its value gives, without the value."""
        value = state.pop(field, None)
        if value is not None:
            if uuid5(namespace, value) != event.originator_id:
                # Not how the old code named claims: better to stop than guess.
                raise MigrationRefused(
                    f"claim {event.originator_id} is not named by its {field}: not an old store?"
                )
            kind = EmailClaim if field == "email" else UsernameClaim
            self._claim_ids[event.originator_id] = kind.id_for(self._keys.fingerprint(field, value))
        new_id = self._claim_ids.get(event.originator_id)
        if new_id is None:
            raise MigrationRefused(f"claim {event.originator_id} has no {field} to name it by")
        state["originator_id"] = new_id
        return state

    def _owner(self, event: DomainEventProtocol[UUID], state: dict[str, Any]) -> UUID | None:
        """The account whose key seals the event: an Account's own, the one a SessionStarted
        or a claim names, or, for the rest of a session's events, its session's."""
        if isinstance(event, Account.Event):
            return event.originator_id
        named = state.get("account_id")
        if isinstance(event, Session.Event):
            if isinstance(named, UUID):
                self._session_owners[event.originator_id] = named
                return named
            owner = self._session_owners.get(event.originator_id)
            if owner is None:
                raise MigrationRefused(
                    f"session {event.originator_id} has events before its SessionStarted"
                )
            return owner
        return named if isinstance(named, UUID) else None


def copy_events(
    source: ApplicationRecorder,
    decode: Mapper[UUID],
    target: EventLog,
    advance: Callable[[int], None] = lambda done: None,
    batch_size: int = BATCH,
) -> int:
    """Records every event of `source` in `target`, in store order; returns how many. The
    target's observers are not told (its metrics and security log are about what happens now,
    not about history copied)."""
    rewriter = Rewriter(target.keys)
    observers, target.observers = target.observers, []
    copied = 0
    try:
        for page in _pages(source, batch_size):
            events = [rewriter.rewrite(decode.to_domain_event(n)) for n in page]
            target.save(*events)
            copied += len(events)
            advance(len(events))
    finally:
        target.observers = observers
    return copied


def _pages(source: ApplicationRecorder, size: int) -> Iterator[Sequence[Notification]]:
    start = 1
    while page := source.select_notifications(start=start, limit=size):
        yield page
        start = page[-1].id + 1
