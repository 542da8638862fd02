"""Questions answered from the read models: account listings, a user's sessions, the audit log.

Rows keep their person's values sealed (application.read_side.read_seals): a query opens those it answers
with, the keys of a page's people read at once. Accounts are found by an exact email or
username (as Keycloak's exact search), never by a part of one: the rows hold keyed fingerprints
of them, nothing a substring could be matched against.

Read models lag the event store by the projection's lag (milliseconds when it keeps up). A
caller's reads reflect its own commands: before reading, it waits (for a bounded time) until
the projection has applied the last position those commands reached (`caught_up`); everyone
else's writes show up as the projections apply them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from application.audit.trail import TrailEntry
from application.ports import Clock, DeviceNames
from application.read_side.read_batch import Row
from application.read_side.read_models import instant, unix_seconds
from application.read_side.read_seals import ReadSeals
from domain.errors import FieldError, Invalid
from domain.identity import is_email, normalise_email, normalise_username

MAX_PAGE = 500


class Freshness(Protocol):
    def reach(self, projection: str, position: int) -> int:
        """Waits, for a bounded time, until `projection` has applied `position`; answers how
        many positions it is still behind then (0: caught up)."""
        ...


class AccountRows(Protocol):
    def search(
        self, lookup: tuple[str, list[str]] | None, after: tuple[float, str] | None, limit: int
    ) -> list[Row]:
        """Rows whose column `lookup[0]` holds one of `lookup[1]` (None: every row), in the
        order the accounts registered (created_at, then id), after the one `after` names."""
        ...

    def holding(self, role: str) -> list[str]:
        """The ids of the accounts that hold `role`."""
        ...


class SessionRows(Protocol):
    def live_of(self, account_id: str, at: float) -> list[Row]: ...


class AuditRows(Protocol):
    def page(self, where: Row, after: int | None, limit: int, newest_first: bool) -> list[Row]: ...


def _time(stamp: float | None) -> datetime | None:
    return None if stamp is None else instant(stamp)


@dataclass(frozen=True)
class AccountSummary:
    id: UUID
    email: str
    username: str
    display_name: str
    email_verified: bool
    roles: list[str]
    disabled: bool
    locked: bool
    locked_until: datetime | None
    mfa_enabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, row: Row) -> AccountSummary:
        return cls(
            id=UUID(row["id"]),
            email=row["email"],
            username=row["username"],
            display_name=row["display_name"],
            email_verified=bool(row["email_verified"]),
            roles=[r for r in row["roles"].split(",") if r],
            disabled=bool(row["disabled"]),
            locked=bool(row["locked"]),
            locked_until=_time(row["locked_until"]),
            mfa_enabled=bool(row["mfa_enabled"]),
            created_at=instant(row["created_at"]),
            last_login_at=_time(row["last_login_at"]),
        )


@dataclass(frozen=True)
class AccountList:
    """Accounts in the order they registered; pass `next_after` as `after` for the next page
    (null: no more)."""

    accounts: list[AccountSummary]
    next_after: str | None


@dataclass(frozen=True)
class SessionSummary:
    id: UUID
    started_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ip: str
    user_agent: str  # the header as it came, for clients of the API
    device: str | None  # the header in words ("Chrome 156 on Linux"); None: nothing known
    current: bool  # the session of the token that asked


@dataclass(frozen=True)
class Page:
    """Entries, and the cursor that asks for the next page (None: this was the last)."""

    entries: list[TrailEntry]
    next_cursor: int | None


@dataclass(frozen=True)
class AuditFilter:
    account_id: UUID | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: int | None = None
    limit: int = 100


def _cursor(row: Row) -> str:
    """Where the page after `row` starts: its registration time and id (repr: exact)."""
    return f"{row['created_at']!r}:{row['id']}"


def _after(cursor: str) -> tuple[float, str] | None:
    if not cursor:
        return None
    stamp, _, account_id = cursor.partition(":")
    try:
        return float(stamp), str(UUID(account_id))
    except ValueError:
        raise Invalid(FieldError("after", "format", "is not a cursor this listing gave")) from None


class ReadSide:
    def __init__(
        self,
        accounts: Any,
        sessions: Any,
        audit: Any,
        freshness: Freshness,
        clock: Clock,
        device_names: DeviceNames,
        seals: ReadSeals,
    ) -> None:
        self._accounts: AccountRows = accounts
        self._sessions: SessionRows = sessions
        self._audit: AuditRows = audit
        self._freshness = freshness
        self._clock = clock
        # Named as read, not as projected: the parser's rules improve, and the stored header
        # stays what the browser sent.
        self._device_names = device_names
        self._seals = seals

    def caught_up(self, projection: str, written: int) -> int:
        """Called before a read of `projection` by a caller whose own commands last reached
        position `written`: returns once the read would show them, or when the bound has passed,
        with how many positions the read is still behind (0: it shows them all)."""
        return self._freshness.reach(projection, written)

    def accounts(self, text: str = "", after: str = "", limit: int = 100) -> list[AccountSummary]:
        """With `text`: the account whose email or username it is (compared as registration
        compares them: case-insensitively, the email NFKC-normalised); none for a part of one.
        Without: every account, in the order they registered, after the cursor `after`."""
        return self.account_list(text, after, limit).accounts

    def holding(self, role: str) -> list[UUID]:
        """The accounts that hold `role`, as the read model last saw them."""
        return [UUID(account_id) for account_id in self._accounts.holding(role)]

    def account_list(self, text: str = "", after: str = "", limit: int = 100) -> AccountList:
        """A page of `accounts(text, after)`, and where the next page starts."""
        limit = max(1, min(limit, MAX_PAGE))
        text = text.strip()
        lookup = self._lookup(text) if text else None
        if text and lookup is None:
            return AccountList([], None)
        # One row more than the page, to know whether there is a next page.
        rows = self._accounts.search(lookup, _after(after), limit + 1)
        opened = self._seals.opened("accounts", rows[:limit])
        page = [AccountSummary.of(row) for row in opened]
        return AccountList(page, _cursor(rows[limit - 1]) if len(rows) > limit else None)

    def _lookup(self, text: str) -> tuple[str, list[str]] | None:
        """The fingerprint column an exact search by `text` compares, and the fingerprints it
        compares with; None for text no account can have."""
        try:
            if is_email(text):
                return "email_fingerprint", self._seals.fingerprints("email", normalise_email(text))
            username = normalise_username(text)
        except Invalid:
            return None
        return "username_fingerprint", self._seals.fingerprints("username", username)

    def live_sessions(
        self, account_id: UUID, current_session: UUID | None = None
    ) -> list[SessionSummary]:
        """The account's live sessions; `current_session` (the asker's) is marked `current`."""
        rows = self._seals.opened(
            "sessions", self._sessions.live_of(str(account_id), self._clock.now().timestamp())
        )
        sessions = []
        for row in rows:
            session_id = UUID(row["id"])
            sessions.append(
                SessionSummary(
                    id=session_id,
                    started_at=instant(row["started_at"]),
                    last_used_at=instant(row["last_used_at"]),
                    expires_at=instant(row["expires_at"]),
                    ip=row["ip"],
                    user_agent=row["user_agent"],
                    device=self._device_names(row["user_agent"]),
                    current=session_id == current_session,
                )
            )
        return sessions

    def audit_events(self, query: AuditFilter) -> Page:
        """The trail in store order: the cursor is the position of the last entry seen."""
        return self._page(query, newest_first=False)

    def activity(self, account_id: UUID, cursor: int | None, limit: int) -> Page:
        """An account's own security events, newest first."""
        return self._page(
            AuditFilter(account_id=account_id, cursor=cursor, limit=limit), newest_first=True
        )

    def _page(self, query: AuditFilter, newest_first: bool) -> Page:
        limit = max(1, min(query.limit, MAX_PAGE))
        where = {
            "account_id": str(query.account_id) if query.account_id else None,
            "type": query.type,
            "since": unix_seconds(query.since),
            "until": unix_seconds(query.until),
        }
        rows = self._audit.page(where, query.cursor, limit + 1, newest_first)
        entries = [_entry(row) for row in self._seals.opened("audit_log", rows[:limit])]
        more = len(rows) > limit
        return Page(entries, entries[-1].position if more and entries else None)


def _entry(row: Row) -> TrailEntry:
    return TrailEntry(
        position=int(row["position"]),
        time=instant(row["time"]),
        type=row["type"],
        aggregate=row["aggregate"],
        aggregate_id=UUID(row["aggregate_id"]),
        version=int(row["version"]),
        account_id=UUID(row["account_id"]) if row["account_id"] else None,
        session_id=UUID(row["session_id"]) if row["session_id"] else None,
        ip=row["ip"],
        user_agent=row["user_agent"],
        outcome=row["outcome"],
        details=row["details"],
    )
