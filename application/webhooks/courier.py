"""The courier: posts a lane's deliveries in order, signed as Standard Webhooks asks, and
decides what a failure means (a retry on the schedule, a dead delivery, a disabled endpoint).
Runs in workers; safe to call twice with one lane (a head is claimed once)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec

from application.persistence.event_log import retried_on_conflict
from application.ports import (
    Clock,
    SecretBox,
    WebhookPost,
    WebhookPoster,
    WebhookSigner,
    WebhookTargetRefused,
)
from application.read_side.read_seals import ReadSeals
from application.webhooks.endpoints import WebhookEndpoints
from application.webhooks.feed import PERSONAL_PLACE
from application.webhooks.records import (
    DEAD,
    QUEUED,
    SENT,
    ClaimedDelivery,
    WebhookLedger,
    endpoint_of,
)
from domain.account import ERASED
from domain.errors import WebhookNotFound
from domain.webhook import FAILING_FOR, WebhookEndpoint
from domain.webhook_events import PERSONAL

log = logging.getLogger(__name__)

# Standard Webhooks' schedule: the waits before the second to the tenth try (about three days);
# a delivery whose tenth try fails is dead.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)


@dataclass(frozen=True)
class CourierSettings:
    # How long a claim lasts: longer than one post can take (the poster's whole deadline), so
    # a live courier never loses it, and a dead one's delivery is tried again soon after.
    claim_ttl: timedelta = timedelta(seconds=45)
    # How many of a lane's deliveries one message sends, one after the other.
    batch: int = 100


class Courier:
    def __init__(
        self,
        ledger: WebhookLedger,
        endpoints: WebhookEndpoints,
        poster: WebhookPoster,
        signer: WebhookSigner,
        box: SecretBox,
        seals: ReadSeals,
        clock: Clock,
        wall_clock: Callable[[], datetime],
        settings: CourierSettings | None = None,
        disabled: Callable[[WebhookEndpoint], None] | None = None,
    ) -> None:
        """`clock` decides the schedule (retries, the five days of failures); `wall_clock` is
        the real time each try is stamped with (webhook-timestamp), which receivers check
        against theirs. `disabled`: told when an endpoint is disabled (the admins' mail)."""
        self._ledger = ledger
        self._endpoints = endpoints
        self._poster = poster
        self._signer = signer
        self._box = box
        self._seals = seals
        self._clock = clock
        self._wall = wall_clock
        self._settings = settings or CourierSettings()
        self._disabled = disabled

    def deliver(self, lane: str) -> int:
        """Posts the lane's due deliveries in order, up to a batch; returns how many were
        sent. Stops at the first failure (the lane waits for its retry); a delivery dead
        after its last try lets the next one go."""
        try:
            endpoint = self._endpoints.find(endpoint_of(lane))
        except WebhookNotFound:
            self._ledger.discard(endpoint_of(lane))
            return 0
        if not endpoint.enabled:
            self._ledger.pause(str(endpoint.id), True)
            return 0
        sent = 0
        for _ in range(self._settings.batch):
            claimed = self._ledger.claim_head(lane, self._clock.now(), self._settings.claim_ttl)
            if claimed is None:
                break
            outcome = self._try(endpoint, claimed)
            if outcome == SENT:
                sent += 1
            elif outcome != DEAD or not self._endpoints.find(endpoint.id).enabled:
                break
        return sent

    def _try(self, endpoint: WebhookEndpoint, claimed: ClaimedDelivery) -> str:
        """SENT, QUEUED (for a retry) or DEAD."""
        post = self.compose(endpoint, claimed, self._wall())
        status: int | None = None
        try:
            status = self._poster.post(post)
        except WebhookTargetRefused:
            error = "refused: the address is not one the service may reach"
        except OSError as failure:
            error = f"no answer: {type(failure).__name__}"
        except Exception as failure:  # a bug here must not lose the delivery's claim for long
            log.exception("webhook %s could not be posted", claimed.id)
            error = f"not posted: {type(failure).__name__}"
        else:
            if 200 <= status < 300:
                self._ledger.sent(claimed.id, status, self._clock.now())
                self._ledger.succeeded(claimed.endpoint_id)
                return SENT
            error = f"answered {status}"
        return self._failed(endpoint, claimed, status, error)

    def _failed(
        self, endpoint: WebhookEndpoint, claimed: ClaimedDelivery, status: int | None, error: str
    ) -> str:
        now = self._clock.now()
        attempt = claimed.attempts
        next_try = now + RETRY_SCHEDULE[attempt - 1] if attempt <= len(RETRY_SCHEDULE) else None
        self._ledger.failed(claimed.id, status, error, now, next_try)
        if next_try is None:
            log.warning("webhook %s is dead after %s tries (%s)", claimed.id, attempt, error)
        else:
            log.info("webhook %s not delivered (%s); next try at %s", claimed.id, error, next_try)
        since = self._ledger.failing_since(claimed.endpoint_id, now)
        if status == 410 or now - since >= FAILING_FOR:
            self._disable(endpoint.id, gone=status == 410)
        return QUEUED if next_try is not None else DEAD

    @retried_on_conflict
    def _disable(self, endpoint_id: UUID, gone: bool) -> None:
        endpoint = self._endpoints.find(endpoint_id)
        now = self._clock.now()
        if gone:
            endpoint.gone(now)
        else:
            since = self._ledger.failing_since(str(endpoint_id), now)
            endpoint.failing_since(since, now)
        if endpoint.enabled:
            return
        self._endpoints.save(endpoint)
        self._ledger.pause(str(endpoint_id), True)
        log.warning("webhook endpoint %s disabled (%s)", endpoint_id, endpoint.disabled_reason)
        if self._disabled is not None:
            self._disabled(endpoint)

    def compose(
        self, endpoint: WebhookEndpoint, claimed: ClaimedDelivery, at: datetime
    ) -> WebhookPost:
        """The post of a delivery at `at`: its recorded body with the person's values as they
        open now (none once erased), signed by every secret that signs at `at`."""
        body = self.body(claimed)
        secrets = [self._box.open(sealed) for sealed in endpoint.signing_secrets(self._clock.now())]
        signature = " ".join(self._signer.sign(s, claimed.id, at, body) for s in secrets)
        return WebhookPost(
            url=endpoint.settings.url,
            headers={
                "content-type": "application/json",
                "webhook-id": claimed.id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": signature,
            },
            body=body,
        )

    def body(self, claimed: ClaimedDelivery) -> bytes:
        document: dict[str, Any] = msgspec.json.decode(claimed.body)
        if claimed.sealed_personal:
            personal = self._seals.open(claimed.account_id, PERSONAL_PLACE, claimed.sealed_personal)
            if isinstance(personal, dict):
                data = document["data"]
                for name in PERSONAL:
                    value = personal.get(name)
                    if isinstance(value, str) and value != ERASED:
                        data[name] = value
        return msgspec.json.encode(document)
