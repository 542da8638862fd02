"""How a recorded event reads in the audit trail: its domain name, the account and session it
concerns, where it came from, and its details with every secret left out."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.utils import get_topic

from application.persistence.sealing import SEALS, Opened
from domain.account import ERASED, Account
from domain.client import OAuthClient
from domain.session import Session
from domain.webhook import WebhookEndpoint

# The only event fields the trail shows. A whitelist, so a field added later (a new hash, a
# sealed secret) stays out of the trail until someone decides it is safe to show.
SHOWN_FIELDS = frozenset(
    {
        "account_id",
        "count",  # machine tokens a client was issued since the last record (ClientTokensIssued)
        "command",  # what a failed guess was for (our own names: "login", "disable_mfa", ...)
        "display_name",
        "email",
        "expires_at",
        "factor",
        "kept_session_id",
        "operator",
        "provider",  # an identity provider's name from settings ("google"), never the person's
        "reason",
        "role",
        # An OpenID Provider client's registered settings (name, redirect URIs, grants), or a
        # webhook endpoint's (URL, event types, description, include_personal): no secret
        # among them; a client's secret's digest and an endpoint's sealed secret are fields of
        # their own, never shown.
        "settings",
        "since",
        "until",
        "username",
    }
)
# Security outcomes worth telling apart when filtering; every other event is a "success".
_OUTCOMES = {
    "LoginFailed": "failure",
    "PasskeyCounterWentBack": "failure",  # a cloned authenticator, refused
    "AccountLocked": "locked",
    "RefreshTokenReuseDetected": "reuse_detected",
}


@dataclass(frozen=True)
class TrailEntry:
    # The event's place in the store: the trail's order and its cursor. None when the entry was
    # read from the aggregate's own stream (a replay), which does not know it.
    position: int | None
    time: datetime
    type: str  # the domain event's class name: Registered, LoginFailed, ...
    aggregate: str  # "Account", "Session", "OAuthClient" or "WebhookEndpoint"
    aggregate_id: UUID
    version: int
    account_id: UUID | None
    session_id: UUID | None
    ip: str
    user_agent: str
    outcome: str
    details: dict[str, Any]
    # Each personal value shown, by its path in the entry ("ip", "details.email"): its
    # commitment in the store, which erasure leaves as it is. The export's hash chain binds
    # these instead of the values (see application.audit.trail_export).
    sealed: dict[str, str] = field(default_factory=dict)
    # The salt that proves each value against its commitment; none once the person is erased.
    salts: dict[str, str] = field(default_factory=dict)

    def erased(self) -> TrailEntry:
        """The entry once its person is forgotten: each sealed value reads ERASED."""
        details = dict(self.details)
        for path in self.sealed:
            if path.startswith("details."):
                details[path.removeprefix("details.")] = ERASED
        return replace(
            self,
            ip=ERASED if "ip" in self.sealed else self.ip,
            user_agent=ERASED if "user_agent" in self.sealed else self.user_agent,
            details=details,
            salts={},
        )


def is_trail_topic(topic: str) -> bool:
    """Whether a stored event's topic is a trail event's: known before decoding it."""
    return topic.startswith(_TRAIL_TOPIC_PREFIXES)


# Accounts and sessions, the OpenID Provider's clients and the webhook endpoints (where events,
# personal ones among them, are sent): each change to a client or an endpoint names the admin
# who made it, or none when the service made it (an endpoint turned off).
_TRAIL_KINDS = (Account, Session, OAuthClient, WebhookEndpoint)
_TRAIL_TOPIC_PREFIXES = tuple(f"{get_topic(kind)}." for kind in _TRAIL_KINDS)


def is_trail_event(event: DomainEventProtocol[Any]) -> bool:
    """Account, Session, OAuthClient and WebhookEndpoint events; the uniqueness claims and the
    directories of clients and endpoints are bookkeeping, not history."""
    return _aggregate_of(event) is not None


def _aggregate_of(event: DomainEventProtocol[Any]) -> str | None:
    qualname = type(event).__qualname__
    for kind in _TRAIL_KINDS:
        if qualname.startswith(f"{kind.__name__}."):
            return kind.__name__
    return None


def trail_entry(
    event: DomainEventProtocol[Any], position: int | None, account_id: UUID | None = None
) -> TrailEntry:
    """The entry for `event`. A Session event names its account only when it started the
    session, so the caller, who has seen that, passes `account_id` for the others."""
    aggregate = _aggregate_of(event) or type(event).__qualname__.split(".")[0]
    return entry_of(
        aggregate,
        type(event).__name__,
        event.originator_id,
        event.originator_version,
        vars(event),
        position,
        account_id,
    )


# What the trail reads of an event's stored state: the shown fields and where it came from.
# The rest (hashes, sealed secrets) is skipped by the parser, never decoded.
READ_FIELDS = SHOWN_FIELDS | {"timestamp", "client", "ip", "user_agent"}


def entry_of(
    aggregate: str,
    name: str,
    aggregate_id: UUID,
    version: int,
    state: dict[str, Any],
    position: int | None,
    account_id: UUID | None = None,
) -> TrailEntry:
    """The entry for an event of `aggregate` named `name`, whose fields (READ_FIELDS at least)
    are `state`."""
    client = state.get("client") or {}
    if aggregate == "Account":
        account_id, session_id = aggregate_id, None
    elif aggregate in ("OAuthClient", "WebhookEndpoint"):
        account_id, session_id = None, None  # its operator is in the details
    else:
        account_id = state.get("account_id", account_id)
        session_id = aggregate_id
    ip = str(state.get("ip") or client.get("ip") or "")
    user_agent = str(state.get("user_agent") or client.get("user_agent") or "")
    shown = {k: _plain(state[k]) for k in sorted(SHOWN_FIELDS.intersection(state))}
    opened: dict[str, Opened] = state.get(SEALS) or {}
    sources = {f"details.{k}": k for k in shown}
    for column in ("ip", "user_agent"):
        if state.get(column):
            sources[column] = column
        elif client.get(column):
            sources[column] = f"client.{column}"
    sealed, salts = {}, {}
    for path, source in sources.items():
        if source in opened:
            sealed[path] = opened[source].commitment
            salt = opened[source].salt
            if salt is not None:
                salts[path] = salt
    return TrailEntry(
        position=position,
        time=state["timestamp"],
        type=name,
        aggregate=aggregate,
        aggregate_id=aggregate_id,
        version=version,
        account_id=account_id,
        session_id=session_id,
        ip=ip,
        user_agent=user_agent,
        outcome=_OUTCOMES.get(name, "success"),
        details=shown,
        sealed=sealed,
        salts=salts,
    )


def _plain(value: Any) -> Any:
    """JSON-ready: times as ISO 8601, ids as strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value
