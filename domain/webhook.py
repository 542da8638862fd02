"""The WebhookEndpoint aggregate: a system elsewhere that is sent the public events it chose,
and the rules on its URL, its events, its secret's rotation and when it stops being sent to."""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import (
    EmptyEventList,
    FieldError,
    Invalid,
    PrivateWebhookTarget,
    UnknownEventType,
    WebhookNotFound,
    WebhookUrlRefused,
)
from domain.webhook_events import CATALOGUE

# After a rotation the previous secret still signs this long (Standard Webhooks: a receiver
# accepts a delivery when any of its signatures verifies), so a receiver can be redeployed with
# the new secret meanwhile; a second rotation within it ends the oldest at once.
SECRET_OVERLAP = timedelta(hours=24)
# Failing this long without one success disables the endpoint (as a 410 Gone does at once).
FAILING_FOR = timedelta(days=5)
# Standard Webhooks' secrets: "whsec_" then the base64 of the key (24 to 64 random bytes).
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret

MAX_URL = 2000
MAX_DESCRIPTION = 200
MAX_EVENTS = len(CATALOGUE) + 8  # room for the types yet to come, none for repetition games


@dataclass(frozen=True)
class Reach:
    """Which receivers the service may post to beyond public https ones (settings)."""

    http_loopback: bool = False  # WEBHOOK_ALLOW_HTTP_LOOPBACK: tests, local development
    private_targets: bool = False  # WEBHOOK_ALLOW_PRIVATE_TARGETS: a receiver inside the network

    def allows(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether a connection to this address may be made (checked on the address each
        connection resolves to, so a name that resolves elsewhere later gains nothing)."""
        if self.private_targets or is_public(address):
            return True
        return self.http_loopback and address.is_loopback


@dataclass(frozen=True)
class EndpointSettings:
    """What an admin registers for an endpoint: everything but its id and secret."""

    url: str
    events: tuple[str, ...]
    description: str = ""
    include_personal: bool = False

    def checked(self, reach: Reach) -> EndpointSettings:
        """The settings, normalised (description trimmed, events without duplicates, in
        order); the most telling error raised first, each with its own problem code: a URL that
        is not https or not absolute, a literal private address, an empty or unknown event."""
        url_problem = url_problem_of(self.url, reach.http_loopback)
        if url_problem is not None:
            raise WebhookUrlRefused(FieldError("url", "url", url_problem))
        host = urlsplit(self.url).hostname or ""
        literal = _ip_literal(host)
        if literal is not None and not reach.allows(literal):
            raise PrivateWebhookTarget(
                FieldError("url", "private", "a private, link-local or metadata address")
            )
        events = tuple(dict.fromkeys(self.events))
        if not events:
            raise EmptyEventList(FieldError("events", "required", "at least one event type"))
        if len(events) > MAX_EVENTS:
            raise Invalid(FieldError("events", "count", f"at most {MAX_EVENTS}"))
        unknown = [name for name in events if name not in CATALOGUE]
        if unknown:
            raise UnknownEventType(
                *(
                    FieldError(f"events[{events.index(name)}]", "choice", "not a public event type")
                    for name in unknown
                )
            )
        description = unicodedata.normalize("NFC", self.description).strip()
        if len(description) > MAX_DESCRIPTION or _has_control(description):
            raise Invalid(
                FieldError("description", "format", f"at most {MAX_DESCRIPTION} printable chars")
            )
        return replace(self, events=events, description=description)

    def state(self) -> dict[str, Any]:
        """As the events carry it: JSON values only."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in state.items()}

    @classmethod
    def of(cls, state: dict[str, Any]) -> EndpointSettings:
        names = {f.name for f in fields(cls)}
        known: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in state.items() if k in names
        }
        return cls(**known)

    def wants(self, event_type: str) -> bool:
        return event_type in self.events


class WebhookEndpoint(Aggregate):
    """An endpoint events are posted to. Its secret is kept sealed by the service's key (the
    event store holds it only so): signing needs the secret itself, so no digest would do."""

    EndpointCreated: ClassVar[type[Any]]
    EndpointDisabled: ClassVar[type[Any]]

    @event("EndpointCreated")
    def __init__(
        self,
        id: UUID,
        settings: dict[str, Any],
        sealed_secret: str,
        operator: str,
        timestamp: datetime,
    ) -> None:
        self.settings_state = settings
        self.sealed_secret = sealed_secret
        self.previous_sealed_secret: str | None = None
        self.previous_valid_until: datetime | None = None
        self.disabled_reason: str | None = None
        self.removed = False

    @classmethod
    def create(
        cls,
        endpoint_id: UUID,
        settings: EndpointSettings,
        sealed_secret: str,
        operator: str,
        at: datetime,
        reach: Reach | None = None,
    ) -> WebhookEndpoint:
        checked = settings.checked(reach or Reach())
        return cls(
            id=endpoint_id,
            settings=checked.state(),
            sealed_secret=sealed_secret,
            operator=operator,
            timestamp=at,
        )

    @property
    def settings(self) -> EndpointSettings:
        return EndpointSettings.of(self.settings_state)

    @property
    def created_at(self) -> datetime:
        return self.created_on

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None and not self.removed

    def update(self, changes: dict[str, Any], operator: str, at: datetime, reach: Reach) -> bool:
        """Applies the changed settings; False when they change nothing. `enabled: true`
        turns a disabled endpoint on again (after its receiver is mended)."""
        self._live()
        enable = changes.pop("enabled", None)
        unknown = set(changes) - {f.name for f in fields(EndpointSettings)}
        if unknown:
            raise Invalid(*(FieldError(k, "unknown", "not an endpoint setting") for k in unknown))
        new = replace(self.settings, **changes).checked(reach)
        changed = False
        if new != self.settings:
            self._endpoint_updated(settings=new.state(), operator=operator, timestamp=at)
            changed = True
        if enable is True and self.disabled_reason is not None:
            self._endpoint_enabled(operator=operator, timestamp=at)
            changed = True
        elif enable is False and self.disabled_reason is None:
            self._endpoint_disabled(reason="operator", operator=operator, timestamp=at)
            changed = True
        return changed

    @event("EndpointUpdated")
    def _endpoint_updated(
        self, settings: dict[str, Any], operator: str, timestamp: datetime
    ) -> None:
        self.settings_state = settings

    def rotate_secret(self, sealed_secret: str, operator: str, at: datetime) -> None:
        """The new secret signs from now on; the current one signs too for SECRET_OVERLAP."""
        self._live()
        self._secret_rotated(
            sealed_secret=sealed_secret,
            previous_valid_until=at + SECRET_OVERLAP,
            operator=operator,
            timestamp=at,
        )

    @event("EndpointSecretRotated")
    def _secret_rotated(
        self, sealed_secret: str, previous_valid_until: datetime, operator: str, timestamp: datetime
    ) -> None:
        self.previous_sealed_secret = self.sealed_secret
        self.previous_valid_until = previous_valid_until
        self.sealed_secret = sealed_secret

    def signing_secrets(self, at: datetime) -> list[str]:
        """The sealed secrets that sign a delivery made at `at`: the current one, and the one
        before it while the overlap after a rotation lasts."""
        secrets = [self.sealed_secret]
        if (
            self.previous_sealed_secret is not None
            and self.previous_valid_until is not None
            and at < self.previous_valid_until
        ):
            secrets.append(self.previous_sealed_secret)
        return secrets

    def replayed(
        self, replay_id: UUID, since: int, until: int, operator: str, at: datetime
    ) -> None:
        """Records that the events from `since` to `until` (log positions) are sent again."""
        self._live()
        self._endpoint_replayed(
            replay_id=replay_id, since=since, until=until, operator=operator, timestamp=at
        )

    @event("EndpointReplayed")
    def _endpoint_replayed(
        self, replay_id: UUID, since: int, until: int, operator: str, timestamp: datetime
    ) -> None:
        pass

    def gone(self, at: datetime) -> None:
        """The receiver answered 410 Gone: it wants no more."""
        self.disable("gone", at)

    def failing_since(self, first_failure: datetime, at: datetime) -> bool:
        """Disables the endpoint when it has failed since `first_failure` for FAILING_FOR;
        True when it did so now."""
        if self.enabled and at - first_failure >= FAILING_FOR:
            self.disable("failing", at)
            return True
        return False

    def disable(self, reason: str, at: datetime) -> None:
        if self.enabled:
            self._endpoint_disabled(reason=reason, operator=None, timestamp=at)

    @event("EndpointDisabled")
    def _endpoint_disabled(self, reason: str, operator: str | None, timestamp: datetime) -> None:
        self.disabled_reason = reason

    @event("EndpointEnabled")
    def _endpoint_enabled(self, operator: str, timestamp: datetime) -> None:
        self.disabled_reason = None

    def remove(self, operator: str, at: datetime) -> None:
        self._live()
        self._endpoint_removed(operator=operator, timestamp=at)

    @event("EndpointRemoved")
    def _endpoint_removed(self, operator: str, timestamp: datetime) -> None:
        self.removed = True

    def _live(self) -> None:
        if self.removed:
            raise WebhookNotFound


# The one directory of endpoints: a fixed id, so every process finds it without an index.
DIRECTORY_ID = UUID("2b7f4f8e-9d3c-5a51-8e0b-3f6a1c9d7e24")


class EndpointDirectory(Aggregate):
    """The ids of the live endpoints, saved with each creation and removal."""

    @event("EndpointDirectoryOpened")
    def __init__(self, id: UUID, timestamp: datetime) -> None:
        self.endpoint_ids: list[UUID] = []

    @classmethod
    def open(cls, at: datetime) -> EndpointDirectory:
        return cls(id=DIRECTORY_ID, timestamp=at)

    @event("EndpointListed")
    def listed(self, endpoint_id: UUID, timestamp: datetime) -> None:
        self.endpoint_ids.append(endpoint_id)

    def unlist(self, endpoint_id: UUID, at: datetime) -> None:
        if endpoint_id in self.endpoint_ids:
            self._endpoint_unlisted(endpoint_id=endpoint_id, timestamp=at)

    @event("EndpointUnlisted")
    def _endpoint_unlisted(self, endpoint_id: UUID, timestamp: datetime) -> None:
        self.endpoint_ids.remove(endpoint_id)


def url_problem_of(url: str, allow_http_loopback: bool) -> str | None:
    """Why `url` cannot be an endpoint's, or None when it can."""
    if len(url) > MAX_URL or _has_control(url) or any(c.isspace() for c in url):
        return f"at most {MAX_URL} characters, no spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return "not a URL"
    if not parts.scheme or not parts.netloc or not parts.hostname:
        return "must be absolute"
    if "#" in url:
        return "must have no fragment"
    if "@" in parts.netloc:
        return "must have no user name or password"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and allow_http_loopback and _is_loopback_host(parts.hostname):
        return None
    return "must be https"


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a receiver may be at this address: none of the private, loopback, link-local
    (cloud metadata at 169.254.169.254 and fd00:ec2::254 among them), shared, reserved or
    multicast ranges; an IPv4 address inside IPv6 (mapped, 6to4, NAT64) is judged as itself.
    The IPv6 ranges that only wrap IPv4 for a local stack or network (IPv4-compatible,
    SIIT-translated, local-use NAT64) are refused outright: Python counts them global."""
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in wrapped for wrapped in _LOCAL_IPV4_WRAPPERS):
            return False
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return is_public(inner)
    return address.is_global and not address.is_multicast


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_IPV4_WRAPPERS = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (RFC 4291, deprecated)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # SIIT IPv4-translated (RFC 2765)
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
)


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_loopback_host(host: str) -> bool:
    literal = _ip_literal(host)
    return host == "localhost" if literal is None else literal.is_loopback


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c).startswith("C") for c in text)
