"""The read side: projections that turn recorded events into rows that queries can read fast.

Each projection decides which rows an event changes; a batch of events is folded into the rows
it touches (application.read_side.read_batch) and written in one transaction with the tracking record of
its last event, so a projector that dies anywhere resumes after the last batch it wrote, and no
event is applied twice. Rows depend on the events alone (never
on when they were projected), so a rebuild from the first event yields rows that read the same.
A person's values are kept sealed under their data key (application.read_side.read_seals): a row's copies
in the store's files outlive no erasure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.audit.trail import READ_FIELDS, TrailEntry, trail_entry
from application.persistence.sealing import PERSONAL_FIELDS
from application.read_side.read_batch import Batch, Change, Forget, ReadStore, Row, Update, Upsert
from application.read_side.read_seals import ReadSeals
from domain.account import ERASED, Account
from domain.client import OAuthClient
from domain.session import Session
from domain.webhook import WebhookEndpoint


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


Positioned = tuple[DomainEventProtocol[Any], int]  # an event and its position in the store


class _Projection:
    name: str
    topics: tuple[str, ...]
    # The event fields `changes` reads (besides id, version and timestamp); the projector then
    # decodes only those (SealingMapper.to_domain_events). None: whole events.
    fields: frozenset[str] | None = None

    def __init__(self, store: Any, seals: ReadSeals) -> None:
        self.store: ReadStore = store
        self._view: TrackingRecorder = store
        self.seals = seals

    @property
    def view(self) -> TrackingRecorder:
        return self._view

    def process_events(self, events: Sequence[Positioned], tracking: Tracking) -> None:
        batch = Batch(self.store)
        self.prefetch(events, batch)
        for event, position in events:
            batch.apply(self.changes(event, position, batch))
            if isinstance(event, Account.AccountErased):
                batch.forget(self.forgets(event.originator_id))
        batch.commit(tracking)

    def prefetch(self, events: Sequence[Positioned], batch: Batch) -> None:
        """Loads at once the stored rows the events will change (an optimisation: a row not
        loaded here is read when a change needs it)."""

    def changes(self, event: DomainEventProtocol[Any], position: int, rows: Batch) -> list[Change]:
        """The rows the event at `position` in the store changes; `rows` are the projection's
        rows as the events before it left them."""
        raise NotImplementedError

    def forgets(self, account_id: UUID) -> list[Forget]:
        """What the erasure of an account removes or blanks: every row that held its person's
        data."""
        raise NotImplementedError


def _timestamp(event: DomainEventProtocol[Any]) -> float:
    stamp: datetime = vars(event)["timestamp"]
    return stamp.timestamp()


def _registered(state: dict[str, Any], event: DomainEventProtocol[Any]) -> Row:
    """The row a registration makes, its personal values still in plain (see ReadSeals)."""
    at = _timestamp(event)
    return {
        "id": str(event.originator_id),
        "email": state["email"],
        "username": state["username"],
        "display_name": "",
        "email_verified": 0,
        "roles": "",
        "disabled": 0,
        "locked": 0,
        "locked_until": None,
        "mfa_enabled": 0,
        "created_at": at,
        "updated_at": at,
        "version": event.originator_version,
    }


def _roles(row: Row | None) -> list[str]:
    return [role for role in (row or {}).get("roles", "").split(",") if role]


# What each Account event sets on its row, besides updated_at and version: the event bodies of
# domain/account.py, restricted to the columns of account_row. (A test folds a long history and
# compares each row with account_row of the aggregate at that version.)
_ACCOUNT_COLUMNS: dict[str, Any] = {
    "EmailVerified": lambda state, row: {"email_verified": 1},
    "AccountLocked": lambda state, row: {
        "locked": 1,
        "locked_until": unix_seconds(state["until"]),
    },
    "AccountUnlocked": lambda state, row: {"locked": 0, "locked_until": None},
    "AccountDisabled": lambda state, row: {"disabled": 1},
    "AccountEnabled": lambda state, row: {"disabled": 0},
    "RoleGranted": lambda state, row: {
        "roles": ",".join(sorted({*_roles(row), state["role"]})),
    },
    "RoleRevoked": lambda state, row: {
        "roles": ",".join(r for r in _roles(row) if r != state["role"]),
    },
    "MfaEnabled": lambda state, row: {"mfa_enabled": 1},
    "MfaDisabled": lambda state, row: {"mfa_enabled": 0},
    "ProfileUpdated": lambda state, row: {"display_name": state["display_name"]},
}
_READS_ITS_ROW = frozenset({"RoleGranted", "RoleRevoked", "ClaimsRekeyed"})


class AccountsProjection(_Projection):
    """One row per account, as the Account aggregate stood after the event: for listing and
    searching accounts without loading each one. Rows are folded from the events themselves
    (see _ACCOUNT_COLUMNS), so a rebuild reads the store once instead of loading every account
    at every version."""

    name = "accounts"
    topics = (*_topics(Account), get_topic(Session.SessionStarted))
    # _registered, _ACCOUNT_COLUMNS, and the account a SessionStarted names.
    fields = frozenset({"email", "username", "until", "role", "display_name", "account_id"})

    def prefetch(self, events: Sequence[Positioned], batch: Batch) -> None:
        registered, wanted = set(), []
        for event, _ in events:
            if isinstance(event, Session.SessionStarted):
                wanted.append(str(event.account_id))
            elif type(event).__name__ == "Registered":
                registered.add(str(event.originator_id))
            else:
                wanted.append(str(event.originator_id))
        batch.load("accounts", [key for key in wanted if key not in registered])

    def changes(self, event: DomainEventProtocol[Any], position: int, rows: Batch) -> list[Change]:
        if isinstance(event, Session.SessionStarted):
            stamp = _timestamp(event)
            return [Update("accounts", {"id": str(event.account_id)}, {"last_login_at": stamp})]
        state = vars(event)
        name = type(event).__name__
        owner = event.originator_id
        if name == "Registered":
            return [
                Upsert("accounts", self.seals.sealed("accounts", owner, _registered(state, event)))
            ]
        key = {"id": str(owner)}
        row = rows.get("accounts", key["id"]) if name in _READS_ITS_ROW else None
        values = _ACCOUNT_COLUMNS[name](state, row) if name in _ACCOUNT_COLUMNS else {}
        if name == "ClaimsRekeyed" and row is not None:
            # Claimed anew under a new fingerprint key: so is the row, before the old key goes.
            (opened,) = self.seals.opened("accounts", [row])
            values.update(email=opened["email"], username=opened["username"])
        values.update(updated_at=_timestamp(event), version=event.originator_version)
        return [Update("accounts", key, self.seals.sealed("accounts", owner, values))]

    def forgets(self, account_id: UUID) -> list[Forget]:
        return [Forget("accounts", {"id": str(account_id)})]


def account_row(account: Account) -> Row:
    """An account's row, from the aggregate: what the folded row must read as."""
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


def _session_keys(events: Sequence[Positioned]) -> list[str]:
    """The sessions whose rows the batch's events read: those started before the batch."""
    started, wanted = set(), []
    for event, _ in events:
        if isinstance(event, Session.SessionStarted):
            started.add(str(event.originator_id))
        elif isinstance(event, Session.Event):
            wanted.append(str(event.originator_id))
    return [key for key in wanted if key not in started]


class SessionsProjection(_Projection):
    """One row per login session: the device list a user sees and ends sessions from."""

    name = "sessions"
    topics = (
        *_topics(Session),
        get_topic(Account.AllSessionsRevoked),
        get_topic(Account.AccountErased),
    )

    def forgets(self, account_id: UUID) -> list[Forget]:
        return [Forget("sessions", {"account_id": str(account_id)})]

    def prefetch(self, events: Sequence[Positioned], batch: Batch) -> None:
        batch.load("sessions", _session_keys(events))

    def changes(self, event: DomainEventProtocol[Any], position: int, rows: Batch) -> list[Change]:
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
            return [Upsert("sessions", self.seals.sealed("sessions", event.account_id, row))]
        name = type(event).__name__
        if name == "SessionRefreshed":
            values = {"last_used_at": at, "expires_at": unix_seconds(state["expires_at"])}
            return [Update("sessions", key, values)]
        if name == "SessionRevoked":
            values = {"revoked_at": at, "revocation_reason": state["reason"]}
            return [Update("sessions", {**key, "revoked_at": None}, values)]
        if name == "AllSessionsRevoked":
            return self._all_revoked(rows, event.originator_id, at, state["kept_session_id"])
        return []  # reuse detected: the SessionRevoked that follows says what changed

    @staticmethod
    def _all_revoked(
        rows: Batch, account_id: UUID, at: float | None, kept: UUID | None
    ) -> list[Change]:
        live = rows.select("sessions", {"account_id": str(account_id), "revoked_at": None})
        return [
            Update(
                "sessions",
                {"id": row["id"]},
                {"revoked_at": at, "revocation_reason": "all_sessions_revoked"},
            )
            for row in sorted(live, key=lambda row: str(row["id"]))
            if row["id"] != (str(kept) if kept else None) and row["started_at"] <= (at or 0)
        ]


class AuditProjection(_Projection):
    """The audit log: one row per security event, in store order, without secrets."""

    name = "audit_log"
    topics = _topics(Account, Session, OAuthClient, WebhookEndpoint)
    fields = READ_FIELDS  # what trail_entry reads

    def prefetch(self, events: Sequence[Positioned], batch: Batch) -> None:
        batch.load("audit_sessions", _session_keys(events))

    def changes(self, event: DomainEventProtocol[Any], position: int, rows: Batch) -> list[Change]:
        changes: list[Change] = []
        account_id: UUID | None = None
        if isinstance(event, Session.SessionStarted):
            row = {"id": str(event.originator_id), "account_id": str(event.account_id)}
            changes.append(Upsert("audit_sessions", row))
        elif isinstance(event, Session.Event):
            # Only SessionStarted names the account; the rest are found by their session.
            known = rows.get("audit_sessions", str(event.originator_id))
            account_id = UUID(known["account_id"]) if known else None
        entry = trail_entry(event, position, account_id)
        changes.append(Upsert("audit_log", audit_row(entry, self.seals)))
        return changes

    def forgets(self, account_id: UUID) -> list[Forget]:
        return [Forget("audit_log", {"account_id": str(account_id)}, erased_audit_row)]


def erased_audit_row(row: Row) -> Row:
    """An audit row (as stored) with its person's values read as erased; the rest (what
    happened, when, to which account) is kept: the trail outlives the person. Their sealed
    values would read as erased anyway, their key being destroyed: this leaves none behind."""
    details = json.loads(row["details"])
    for field in PERSONAL_FIELDS.intersection(details):
        details[field] = ERASED
    return {
        **row,
        "sealed_ip": ERASED if row["sealed_ip"] else "",
        "sealed_user_agent": ERASED if row["sealed_user_agent"] else "",
        "details": _details(details),
    }


_DETAILS = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # made once: a hot loop
_FAST_DETAILS = msgspec.json.Encoder(order="sorted")


_PLAIN_SCALARS = (str, int, bool, type(None))  # not float: msgspec writes 1e16, json 1e+16


def _details(details: dict[str, Any]) -> str:
    """_DETAILS.encode(details), made by msgspec (several times faster) where the two agree:
    flat details of strings, integers, booleans and nulls whose text is printable ASCII alone
    (json escapes every other character as \\uXXXX, msgspec writes most as they are; a test
    compares them over every code point)."""
    if all(type(value) in _PLAIN_SCALARS for value in details.values()):
        fast = _FAST_DETAILS.encode(details)
        if fast.isascii() and b"\x7f" not in fast:
            return fast.decode()
    return _DETAILS.encode(details)


def audit_row(entry: TrailEntry, seals: ReadSeals) -> Row:
    """The entry's row, its person's values sealed under their key."""
    owner = entry.account_id
    return {
        "position": entry.position,
        "time": unix_seconds(entry.time),
        "type": entry.type,
        "aggregate": entry.aggregate,
        "aggregate_id": str(entry.aggregate_id),
        "version": entry.version,
        "account_id": str(entry.account_id) if entry.account_id else None,
        "session_id": str(entry.session_id) if entry.session_id else None,
        "sealed_ip": seals.seal(owner, "audit_log.ip", entry.ip),
        "sealed_user_agent": seals.seal(owner, "audit_log.user_agent", entry.user_agent),
        "outcome": entry.outcome,
        "details": _details(seals.sealed_details(owner, entry.details)),
    }
