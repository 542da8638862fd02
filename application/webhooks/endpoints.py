"""What admins do to webhook endpoints. Each change names its operator; a secret is shown once,
when made, and kept sealed by the service's key (signing needs it, so no digest would do)."""

from __future__ import annotations

import base64
import builtins
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import Clock, SecretBox
from application.webhooks.records import WebhookLedger
from domain.errors import WebhookNotFound
from domain.webhook import (
    DIRECTORY_ID,
    SECRET_PREFIX,
    EndpointDirectory,
    EndpointSettings,
    Reach,
    WebhookEndpoint,
)

# Standard Webhooks asks for 24 to 64 random bytes; 32 is HMAC-SHA256's own key length.
_SECRET_BYTES = 32


@dataclass(frozen=True)
class EndpointView:
    """An endpoint as admins read it: never its secret."""

    id: str
    url: str
    events: list[str]
    description: str
    include_personal: bool
    enabled: bool
    disabled_reason: str | None  # "gone" (410), "failing" (five days), "operator"
    created_at: datetime
    updated_at: datetime
    # While the secret before the last rotation still signs too; None otherwise.
    previous_secret_valid_until: datetime | None

    @classmethod
    def of(cls, endpoint: WebhookEndpoint, at: datetime) -> EndpointView:
        settings = endpoint.settings
        until = endpoint.previous_valid_until
        return cls(
            id=str(endpoint.id),
            url=settings.url,
            events=list(settings.events),
            description=settings.description,
            include_personal=settings.include_personal,
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            created_at=endpoint.created_at,
            updated_at=endpoint.modified_on,
            previous_secret_valid_until=until if until is not None and at < until else None,
        )


@dataclass(frozen=True)
class EndpointSecret:
    """The answer that shows a secret, the one time it is shown."""

    id: str
    secret: str


def new_secret() -> str:
    """A Standard Webhooks secret: the prefix, then the base64 of the random key."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


class WebhookEndpoints:
    def __init__(
        self,
        log: EventLog,
        box: SecretBox,
        clock: Clock,
        reach: Reach,
        ledger: WebhookLedger | None = None,
    ) -> None:
        self._ledger = ledger  # whose lanes wait while their endpoint is disabled
        self._log = log
        self._box = box
        self._clock = clock
        self._reach = reach

    @retried_on_conflict
    def create(self, settings: EndpointSettings, operator: str) -> EndpointSecret:
        """A new endpoint, listed in the directory in the same save."""
        now = self._clock.now()
        secret = new_secret()
        endpoint = WebhookEndpoint.create(
            uuid4(), settings, self._box.seal(secret), operator, now, self._reach
        )
        directory = self._directory(now)
        directory.listed(endpoint_id=endpoint.id, timestamp=now)
        self._log.save(directory, endpoint)
        return EndpointSecret(str(endpoint.id), secret)

    def list(self) -> list[EndpointView]:
        now = self._clock.now()
        return sorted(
            (EndpointView.of(endpoint, now) for endpoint in self.live()),
            key=lambda view: (view.created_at, view.id),
        )

    def live(self) -> builtins.list[WebhookEndpoint]:
        """Every endpoint not removed, enabled or not."""
        directory = self._log.find(DIRECTORY_ID, EndpointDirectory)
        found = [
            self._log.find(endpoint_id, WebhookEndpoint)
            for endpoint_id in (directory.endpoint_ids if directory else [])
        ]
        return [e for e in found if e is not None and not e.removed]

    def endpoint(self, endpoint_id: str) -> EndpointView:
        return EndpointView.of(self.find(endpoint_id), self._clock.now())

    @retried_on_conflict
    def update(self, endpoint_id: str, changes: dict[str, Any], operator: str) -> EndpointView:
        endpoint = self.find(endpoint_id)
        now = self._clock.now()
        if endpoint.update(dict(changes), operator, now, self._reach):
            self._log.save(endpoint)
        if self._ledger is not None:
            self._ledger.pause(str(endpoint.id), not endpoint.enabled)
        return EndpointView.of(endpoint, now)

    @retried_on_conflict
    def rotate_secret(self, endpoint_id: str, operator: str) -> EndpointSecret:
        endpoint = self.find(endpoint_id)
        secret = new_secret()
        endpoint.rotate_secret(self._box.seal(secret), operator, self._clock.now())
        self._log.save(endpoint)
        return EndpointSecret(str(endpoint.id), secret)

    @retried_on_conflict
    def remove(self, endpoint_id: str, operator: str) -> None:
        endpoint = self.find(endpoint_id)
        now = self._clock.now()
        endpoint.remove(operator, now)
        directory = self._directory(now)
        directory.unlist(endpoint.id, now)
        self._log.save(directory, endpoint)
        if self._ledger is not None:
            self._ledger.discard(str(endpoint.id))

    def find(self, endpoint_id: str | UUID) -> WebhookEndpoint:
        try:
            aggregate_id = endpoint_id if isinstance(endpoint_id, UUID) else UUID(endpoint_id)
        except ValueError:
            raise WebhookNotFound from None
        endpoint = self._log.find(aggregate_id, WebhookEndpoint)
        if endpoint is None or endpoint.removed:
            raise WebhookNotFound
        return endpoint

    def save(self, endpoint: WebhookEndpoint) -> None:
        self._log.save(endpoint)

    def _directory(self, at: datetime) -> EndpointDirectory:
        return self._log.find(DIRECTORY_ID, EndpointDirectory) or EndpointDirectory.open(at)
