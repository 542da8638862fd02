"""The read side: projections that turn recorded events into rows that queries can read fast.

Each projection decides which rows an event changes; its store applies those changes in the same
transaction as the projection's tracking record, so a projector that dies anywhere resumes after
the last event it applied, and no event is applied twice. Rows depend on the events alone (never
on when they were projected), so a rebuild from the first event yields the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.event_log import EventLog
from application.trail import TrailEntry, trail_entry
from domain.account import Account
from domain.session import Session

Row = dict[str, Any]


@dataclass(frozen=True)
class Upsert:
    """Insert the row, or overwrite the columns given if its key exists."""

    table: str
    row: Row


@dataclass(frozen=True)
class Update:
    """Set `values` on the rows whose columns equal `where` (none, if there is none)."""

    table: str
    where: Row
    values: Row


Change = Upsert | Update


class ReadStore(Protocol):
    """A projection's tables and its tracking record, in one database."""

    def apply(self, changes: Sequence[Change], tracking: Tracking) -> None:
        """Applies every change and records `tracking`, in one transaction."""
        ...

    def rows(self, table: str, where: Row) -> list[Row]:
        """Rows whose columns equal `where`: what a projection reads to decide its changes."""
        ...

    def reset(self, application_name: str) -> None:
        """Deletes every row and the tracking record of events from `application_name`: the
        next event applied is the first."""
        ...


def _topics(*kinds: type[Any]) -> tuple[str, ...]:
    """The topics of every event class the given aggregates record."""
    topics = []
    for kind in kinds:
        for name in dir(kind):
            value = getattr(kind, name)
            if (
                isinstance(value, type)
                and issubclass(value, kind.Event)
                and value.__qualname__ == f"{kind.__name__}.{name}"
                and name not in {"Event", "Created", "Snapshot"}
            ):
                topics.append(get_topic(value))
    return tuple(sorted(topics))


def unix_seconds(value: datetime | None) -> float | None:
    """Times are stored as Unix seconds: one type that sorts and compares alike on both stores."""
    return None if value is None else value.timestamp()


def instant(stamp: float) -> datetime:
    """A stored time read back (see unix_seconds)."""
    return datetime.fromtimestamp(stamp, UTC)


class _Projection:
    name: str
    topics: tuple[str, ...]

    def __init__(self, store: Any) -> None:
        self.store: ReadStore = store
        self._view: TrackingRecorder = store

    @property
    def view(self) -> TrackingRecorder:
        return self._view

    def process_event(self, domain_event: DomainEventProtocol[Any], tracking: Tracking) -> None:
        self.store.apply(self.changes(domain_event, tracking.notification_id), tracking)

    def changes(self, event: DomainEventProtocol[Any], position: int) -> list[Change]:
        """The rows the event at `position` in the store changes."""
        raise NotImplementedError


class AccountsProjection(_Projection):
    """One row per account, as the Account aggregate stood after the event: for listing and
    searching accounts without loading each one."""

    name = "accounts"
    topics = (*_topics(Account), get_topic(Session.SessionStarted))

    def __init__(self, store: Any, log: EventLog) -> None:
        super().__init__(store)
        self._log = log

    def changes(self, event: DomainEventProtocol[Any], position: int) -> list[Change]:
        if isinstance(event, Session.SessionStarted):
            stamp = unix_seconds(vars(event)["timestamp"])
            return [Update("accounts", {"id": str(event.account_id)}, {"last_login_at": stamp})]
        # The aggregate at this event's version: deterministic, and the domain's own rules
        # (what a lock or a role means) rather than a second copy of them here.
        account: Any = self._log.repository.get(
            event.originator_id, version=event.originator_version
        )
        assert isinstance(account, Account)
        return [Upsert("accounts", account_row(account))]


def account_row(account: Account) -> Row:
    return {
        "id": str(account.id),
        "email": account.email,
        "username": account.username,
        "display_name": account.display_name,
        "email_verified": int(account.email_verified),
        "roles": ",".join(account.roles),
        "disabled": int(account.disabled),
        "locked": int(account.locked),
        "locked_until": unix_seconds(account.locked_until),
        "mfa_enabled": int(account.mfa_enabled),
        "created_at": unix_seconds(account.created_on),
        "updated_at": unix_seconds(account.modified_on),
        "version": account.version,
    }


class SessionsProjection(_Projection):
    """One row per login session: the device list a user sees and ends sessions from."""

    name = "sessions"
    topics = (*_topics(Session), get_topic(Account.AllSessionsRevoked))

    def changes(self, event: DomainEventProtocol[Any], position: int) -> list[Change]:
        state = vars(event)
        at = unix_seconds(state["timestamp"])
        key = {"id": str(event.originator_id)}
        if isinstance(event, Session.SessionStarted):
            row = {
                **key,
                "account_id": str(event.account_id),
                "started_at": at,
                "last_used_at": at,
                "expires_at": unix_seconds(state["expires_at"]),
                "ip": event.ip,
                "user_agent": event.user_agent,
                "revoked_at": None,
                "revocation_reason": None,
            }
            return [Upsert("sessions", row)]
        name = type(event).__name__
        if name == "SessionRefreshed":
            values = {"last_used_at": at, "expires_at": unix_seconds(state["expires_at"])}
            return [Update("sessions", key, values)]
        if name == "SessionRevoked":
            values = {"revoked_at": at, "revocation_reason": state["reason"]}
            return [Update("sessions", {**key, "revoked_at": None}, values)]
        if name == "AllSessionsRevoked":
            return self._all_revoked(event.originator_id, at, state["kept_session_id"])
        return []  # reuse detected: the SessionRevoked that follows says what changed

    def _all_revoked(self, account_id: UUID, at: float | None, kept: UUID | None) -> list[Change]:
        live = self.store.rows("sessions", {"account_id": str(account_id), "revoked_at": None})
        return [
            Update(
                "sessions",
                {"id": row["id"]},
                {"revoked_at": at, "revocation_reason": "all_sessions_revoked"},
            )
            for row in live
            if row["id"] != (str(kept) if kept else None) and row["started_at"] <= (at or 0)
        ]


class AuditProjection(_Projection):
    """The audit log: one row per security event, in store order, without secrets."""

    name = "audit_log"
    topics = _topics(Account, Session)

    def changes(self, event: DomainEventProtocol[Any], position: int) -> list[Change]:
        changes: list[Change] = []
        account_id: UUID | None = None
        if isinstance(event, Session.SessionStarted):
            row = {"id": str(event.originator_id), "account_id": str(event.account_id)}
            changes.append(Upsert("audit_sessions", row))
        elif isinstance(event, Session.Event):
            # Only SessionStarted names the account; the rest are found by their session.
            known = self.store.rows("audit_sessions", {"id": str(event.originator_id)})
            account_id = UUID(known[0]["account_id"]) if known else None
        changes.append(Upsert("audit_log", audit_row(trail_entry(event, position, account_id))))
        return changes


def audit_row(entry: TrailEntry) -> Row:
    row = asdict(entry)
    row.update(
        time=unix_seconds(entry.time),
        aggregate_id=str(entry.aggregate_id),
        account_id=str(entry.account_id) if entry.account_id else None,
        session_id=str(entry.session_id) if entry.session_id else None,
        details=json.dumps(entry.details, sort_keys=True, separators=(",", ":")),
    )
    return row
