"""The public event catalogue: what other systems are told, in a shape of its own.

Receivers depend on these types and fields, never on the internal event classes, which change
with the service. A type's fields only grow within its version; a change that would break a
receiver makes a new type (`account.registered.v2`) beside the old one. Each body is
{type, timestamp, data}: ids, kinds and times always; the personal fields (email, username,
display name) only for endpoints created with `include_personal`, and never once the person is
erased (their values then read as erased, and are left out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.account import ERASED, Account
from domain.session import Session

CATALOGUE_VERSION = 1
# The personal fields a body may carry, for endpoints that asked for them.
PERSONAL = ("email", "username", "display_name")

_UUID = {"type": "string", "format": "uuid"}
_TIME = {"type": "string", "format": "date-time"}
_TEXT = {"type": "string"}


@dataclass(frozen=True)
class EventType:
    """One public type: its name, what it means, and its data's fields as JSON Schema."""

    name: str
    summary: str
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    personal: tuple[str, ...] = ()
    version: int = CATALOGUE_VERSION

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of a body of this type."""
        data = {"account_id": _UUID, **self.fields}
        data.update({name: _TEXT for name in self.personal})
        return {
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": self.name},
                "timestamp": _TIME,
                "data": {
                    "type": "object",
                    "required": ["account_id", *self.fields],
                    "properties": data,
                },
            },
        }


_TYPES = (
    EventType(
        "account.registered",
        "An account was made (by registration, or a first sign-in with a provider).",
        personal=("email", "username"),
    ),
    EventType(
        "account.email_verified", "The account's email address was verified.", {}, ("email",)
    ),
    EventType(
        "account.profile_updated", "The person changed their profile.", {}, ("display_name",)
    ),
    EventType("account.password_changed", "The password was changed or reset."),
    EventType("account.mfa_enabled", "Two-step sign-in (TOTP) was turned on."),
    EventType("account.mfa_disabled", "Two-step sign-in (TOTP) was turned off."),
    EventType(
        "account.locked",
        "The account was locked: after failed logins (until a time) or by an admin.",
        {
            "until": {"type": ["string", "null"], "format": "date-time"},
            "by_admin": {"type": "boolean"},
        },
    ),
    EventType("account.disabled", "An admin disabled the account."),
    EventType(
        "account.erased",
        "The account and its personal data were erased: forget the person too.",
    ),
    EventType(
        "session.started",
        "The person signed in on a device.",
        {"session_id": _UUID, "expires_at": _TIME},
    ),
    EventType(
        "session.ended",
        "A session ended: signed out, revoked, or ended by a security rule.",
        {"session_id": _UUID, "reason": _TEXT},
    ),
    EventType(
        "session.refresh_token_reused",
        "A spent refresh token came back (a stolen token?): its session was ended.",
        {"session_id": _UUID},
    ),
    EventType("passkey.added", "A passkey was added to the account."),
    EventType("passkey.removed", "A passkey was removed from the account."),
    EventType(
        "identity.linked",
        "An identity at another provider was linked to the account.",
        {"identity_id": _TEXT, "provider": _TEXT},
    ),
    EventType(
        "identity.unlinked",
        "An identity at another provider was unlinked from the account.",
        {"identity_id": _TEXT, "provider": _TEXT},
    ),
    # consent.granted and consent.revoked come with the OpenID Provider's consents (#22): a row
    # here, and its mapping in _MAPPINGS below.
)
CATALOGUE: dict[str, EventType] = {kind.name: kind for kind in _TYPES}


@dataclass(frozen=True)
class PublicEvent:
    """An internal event as a receiver sees it. `data` holds ids, kinds and times; `personal`
    the person's own values, sent only to endpoints that asked for them."""

    type: str
    account_id: UUID
    timestamp: datetime
    data: dict[str, Any]
    personal: dict[str, Any]

    def body(self, personal: dict[str, Any] | None) -> dict[str, Any]:
        """The body as posted; `personal` as it reads now (None or {} to leave them out): a
        value erased since reads ERASED and is left out."""
        data = {"account_id": str(self.account_id), **self.data}
        for name, value in (personal or {}).items():
            if name in PERSONAL and isinstance(value, str) and value != ERASED:
                data[name] = value
        return {"type": self.type, "timestamp": instant(self.timestamp), "data": data}


def instant(at: datetime) -> str:
    """RFC 3339 in UTC, as receivers parse it everywhere."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _nothing(event: Any) -> dict[str, Any]:
    return {}


def _locked(event: Any) -> dict[str, Any]:
    until = getattr(event, "until", None)
    return {
        "until": None if until is None else instant(until),
        "by_admin": getattr(event, "operator", None) is not None,
    }


def _session(event: Any) -> dict[str, Any]:
    return {"session_id": str(event.originator_id)}


def _started(event: Any) -> dict[str, Any]:
    return {"session_id": str(event.originator_id), "expires_at": instant(event.expires_at)}


def _ended(event: Any) -> dict[str, Any]:
    return {"session_id": str(event.originator_id), "reason": event.reason}


def _identity(event: Any) -> dict[str, Any]:
    return {"identity_id": str(event.identity_id), "provider": event.provider}


# Each internal event class that makes a public event: the type, and its data.
_MAPPINGS: dict[type[Any], tuple[str, Callable[[Any], dict[str, Any]]]] = {
    Account.Registered: ("account.registered", _nothing),
    Account.EmailVerified: ("account.email_verified", _nothing),  # type: ignore[attr-defined]
    Account.ProfileUpdated: ("account.profile_updated", _nothing),  # type: ignore[attr-defined]
    Account.PasswordChanged: ("account.password_changed", _nothing),
    Account.MfaEnabled: ("account.mfa_enabled", _nothing),
    Account.MfaDisabled: ("account.mfa_disabled", _nothing),
    Account.AccountLocked: ("account.locked", _locked),
    Account.AccountDisabled: ("account.disabled", _nothing),
    Account.AccountErased: ("account.erased", _nothing),
    Session.SessionStarted: ("session.started", _started),
    Session.SessionRevoked: ("session.ended", _ended),  # type: ignore[attr-defined]
    Session.RefreshTokenReuseDetected: ("session.refresh_token_reused", _session),  # type: ignore[attr-defined]
    Account.PasskeyRegistered: ("passkey.added", _nothing),
    Account.PasskeyRemoved: ("passkey.removed", _nothing),
    Account.IdentityLinked: ("identity.linked", _identity),
    Account.IdentityUnlinked: ("identity.unlinked", _identity),
}
PUBLISHED: tuple[type[Any], ...] = tuple(_MAPPINGS)


def account_of(event: Any) -> UUID | None:
    """Whose event this is, when the event itself says: an account's own, or a session's
    start; None for a later session event (its session's account, which the caller knows)."""
    if isinstance(event, Session.SessionStarted):
        account_id: UUID = event.account_id
        return account_id
    if isinstance(event, Account.Event):
        return UUID(str(event.originator_id))
    return None


def public_event(event: Any, account_id: UUID) -> PublicEvent | None:
    """The public event an internal one makes, or None when it makes none."""
    mapping = _MAPPINGS.get(type(event))
    if mapping is None:
        return None
    name, data = mapping
    kind = CATALOGUE[name]
    personal = {
        field_name: value
        for field_name in kind.personal
        if isinstance(value := getattr(event, field_name, None), str)
    }
    return PublicEvent(name, account_id, event.timestamp, data(event), personal)
