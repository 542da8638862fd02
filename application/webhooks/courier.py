"""The courier: posts the lanes' deliveries, each lane in order, signed as Standard Webhooks
asks, and decides what a failure means (a retry on the schedule, a dead delivery, a disabled
endpoint). Runs in workers; safe to call twice with one lane (a head is claimed once)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
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
    WebhookQueue,
    WebhookSigner,
    WebhookTargetRefused,
)
from application.read_side.read_seals import ReadSeals
from application.webhooks.endpoints import WebhookEndpoints
from application.webhooks.feed import PERSONAL_PLACE
from application.webhooks.records import (
    DEAD,
    QUEUED,
    ClaimedDelivery,
    Settlement,
    WebhookLedger,
    endpoint_of,
    messages,
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
    # How long a claim lasts: longer than a round's posts can take (they start within a third
    # of it, and each lasts at most the poster's timeout), so a live courier never loses it,
    # and a dead one's deliveries are tried again soon after (by the sweep).
    claim_ttl: timedelta = timedelta(seconds=35)
    # How many of a lane's deliveries one message sends, one after the other.
    batch: int = 100
    # How many couriers of this process post to one endpoint at once (each over the poster's
    # few connections): the rest of its threads stay free for the other endpoints while one
    # hangs (its other lanes are handed to the couriers holding the slots).
    lanes_per_endpoint: int = 2


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
    ) -> None:
        """`clock` decides the schedule (retries, the five days of failures); `wall_clock` is
        the real time each try is stamped with (webhook-timestamp), which receivers check
        against theirs."""
        self._ledger = ledger
        self._endpoints = endpoints
        self._poster = poster
        self._signer = signer
        self._box = box
        self._seals = seals
        self._clock = clock
        self._wall = wall_clock
        self._settings = settings or CourierSettings()
        self._posting: dict[str, int] = {}  # endpoint id: lanes being posted to now
        # endpoint id: lanes handed to its couriers of this process, in the order they came
        self._handed: dict[str, dict[str, None]] = {}
        self._lock = threading.Lock()
        self._queue: WebhookQueue | None = None

    def wake_through(self, queue: WebhookQueue) -> None:
        """The queue whose messages wake couriers (declared after the courier, which its
        messages call): lanes a round left untried are woken through it at once, not by the
        sweep, which leaves a head released a moment ago to its own message."""
        self._queue = queue

    def deliver(self, lanes: Sequence[str]) -> int:
        """Posts the due deliveries of these lanes, each lane in order; returns how many were
        sent. A lane stops at its first failure (it waits for its retry); a delivery dead
        after its last try lets the next one go."""
        sent = 0
        for group in messages(lanes):
            sent += self._deliver_endpoint(endpoint_of(group[0]), group)
        return sent

    def _deliver_endpoint(self, endpoint_id: str, lanes: list[str]) -> int:
        endpoint = self._live(endpoint_id)
        if endpoint is None or not self._take_slot(endpoint_id, lanes):
            # Without a slot the lanes are handed to a courier of this process that posts to
            # the endpoint now: it takes them at its next round, not a sweep later.
            return 0
        sent, holding = 0, True
        # A courier that keeps being handed lanes lets its thread go in time (Dramatiq's time
        # limit): what it leaves is taken by the endpoint's next message, or the sweep.
        until = time.monotonic() + self._settings.claim_ttl.total_seconds()
        try:
            while True:
                sent += self._rounds(endpoint, lanes)
                if time.monotonic() > until:
                    break
                lanes = self._handed_or_free(endpoint_id)
                if not lanes:
                    holding = False
                    break
                endpoint = self._live(endpoint_id)
                if endpoint is None:
                    break
        finally:
            if holding:
                self._give_slot(endpoint_id)
        return sent

    def _live(self, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint, if its deliveries are to be posted now."""
        try:
            endpoint = self._endpoints.find(endpoint_id)
        except WebhookNotFound:
            self._ledger.discard(endpoint_id)
            return None
        if not endpoint.enabled:
            self._ledger.pause(endpoint_id, True)
            return None
        return endpoint

    def _rounds(self, endpoint: WebhookEndpoint, lanes: list[str]) -> int:
        """Each round claims the heads of the lanes still going, in one transaction that also
        records what came of the round before, posts them (several at once: heads of different
        lanes), and decides what their failures mean."""
        sent, going = 0, lanes
        endpoint_id = str(endpoint.id)
        settling = Settlement(endpoint_id)
        untried: list[str] = []  # lanes whose claimed head was released unposted
        try:
            for _ in range(self._settings.batch):
                going = self._with_handed(endpoint_id, going)
                if not going:
                    break
                claimed = self._ledger.claim_heads(
                    going, self._clock.now(), self._settings.claim_ttl, settling
                )
                settling = Settlement(endpoint_id)  # recorded with the claim
                if not claimed:
                    break
                # Queued before the endpoint stopped asking for their type: never sent.
                unwanted = [d for d in claimed if not endpoint.settings.wants(d.type)]
                self._ledger.drop([d.id for d in unwanted], self._clock.now())
                claimed = [d for d in claimed if endpoint.settings.wants(d.type)]
                posts = self.compose_all(endpoint, claimed, self._wall())
                # New posts start within a third of the claim's life, so none outlives its claim.
                budget = self._settings.claim_ttl / 3
                outcomes = self._poster.post_each(posts, budget) if posts else []
                results = list(zip(claimed, outcomes, strict=True))
                answered = [(d.id, o) for d, o in results if isinstance(o, int) and 200 <= o < 300]
                delivered = {delivery_id for delivery_id, _ in answered}
                settling = Settlement(
                    endpoint_id, answered, [d.id for d, o in results if o is None]
                )
                untried += [d.lane for d, o in results if o is None]
                sent += len(answered)
                going = [d.lane for d in unwanted]
                going += [d.lane for d, _ in results if d.id in delivered]
                failures = [(d, o) for d, o in results if o is not None and d.id not in delivered]
                if failures:
                    # The round's successes first: a failure after them starts the endpoint's
                    # failing time again.
                    self._ledger.settle(settling, self._clock.now())
                    settling = Settlement(endpoint_id)
                for delivery, outcome in failures:
                    # A dead delivery lets its lane go on; one to retry holds it.
                    if self._failed(endpoint, delivery, *_failure(outcome)) == DEAD:
                        going.append(delivery.lane)
                # Read again (the repository's cache, brought up to date with one query): an
                # admin's changes (disabled, fewer events, no personal values) apply from the
                # next round.
                endpoint = self._endpoints.find(endpoint.id)
                if not endpoint.enabled:
                    break
        finally:
            self._ledger.settle(settling, self._clock.now())
            # After the release commits: a message before it would find the heads still
            # claimed, and take nothing.
            if untried and self._queue is not None:
                try:
                    for group in messages(untried):
                        self._queue.enqueue(group)
                except Exception:  # the broker away: the sweep wakes them a little later
                    log.warning("untried webhook lanes left to the sweep", exc_info=True)
        return sent

    def _take_slot(self, endpoint_id: str, lanes: list[str]) -> bool:
        """A slot of the endpoint's share of this process; with none free, the lanes are
        handed to the couriers holding them."""
        with self._lock:
            busy = self._posting.get(endpoint_id, 0)
            if busy >= self._settings.lanes_per_endpoint:
                self._handed.setdefault(endpoint_id, {}).update(dict.fromkeys(lanes))
                return False
            self._posting[endpoint_id] = busy + 1
            return True

    def _with_handed(self, endpoint_id: str, going: list[str]) -> list[str]:
        with self._lock:
            handed = self._handed.pop(endpoint_id, None)
        return list(dict.fromkeys([*going, *handed])) if handed else going

    def _handed_or_free(self, endpoint_id: str) -> list[str]:
        """The lanes handed over since the last round, the slot kept for them; none, the slot
        given up, in one step, so no lane is handed to a courier that has just left."""
        with self._lock:
            handed = self._handed.pop(endpoint_id, None)
            if handed:
                return list(handed)
            self._release(endpoint_id)
            return []

    def _give_slot(self, endpoint_id: str) -> None:
        with self._lock:
            self._release(endpoint_id)

    def _release(self, endpoint_id: str) -> None:
        left = self._posting[endpoint_id] - 1
        if left:
            self._posting[endpoint_id] = left
        else:
            del self._posting[endpoint_id]

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
        if not endpoint.enabled:
            return  # another courier (or an admin) was first
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
        # Its EndpointDisabled event mails the admins (the mail outbox's TO_ADMINS).
        log.warning("webhook endpoint %s disabled (%s)", endpoint_id, endpoint.disabled_reason)

    def compose_all(
        self, endpoint: WebhookEndpoint, claimed: Sequence[ClaimedDelivery], at: datetime
    ) -> list[WebhookPost]:
        """The posts of deliveries at `at`: each its recorded body with the person's values as
        they open now (none once erased, none once the endpoint no longer includes them),
        signed by every secret that signs at `at`."""
        secrets = [self._box.open(sealed) for sealed in endpoint.signing_secrets(self._clock.now())]
        # Asked of the key store, not of this process's key cache: an erasure the API made a
        # moment ago removes the person's values from every post from now on.
        erased = self._seals.forgotten(d.account_id for d in claimed if d.sealed_personal)
        posts = []
        for delivery in claimed:
            body = self.body(delivery, endpoint.settings.include_personal, erased)
            signature = " ".join(self._signer.sign(s, delivery.id, at, body) for s in secrets)
            headers = {
                "content-type": "application/json",
                "webhook-id": delivery.id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": signature,
            }
            posts.append(WebhookPost(url=endpoint.settings.url, headers=headers, body=body))
        return posts

    def body(
        self, claimed: ClaimedDelivery, include_personal: bool, erased: Collection[UUID] = ()
    ) -> bytes:
        """The recorded body, with the person's values while the endpoint includes them and
        unless the person is among `erased`."""
        document: dict[str, Any] = msgspec.json.decode(claimed.body)
        if include_personal and claimed.sealed_personal and UUID(claimed.account_id) not in erased:
            personal = self._seals.open(claimed.account_id, PERSONAL_PLACE, claimed.sealed_personal)
            if isinstance(personal, dict):
                data = document["data"]
                for name in PERSONAL:
                    value = personal.get(name)
                    if isinstance(value, str) and value != ERASED:
                        data[name] = value
        return msgspec.json.encode(document)


def _failure(outcome: int | Exception) -> tuple[int | None, str]:
    """The status code and the reason a try failed, as a delivery keeps them (never a body)."""
    if isinstance(outcome, int):
        return outcome, f"answered {outcome}"
    if isinstance(outcome, WebhookTargetRefused):
        return None, "refused: the address is not one the service may reach"
    return None, f"no answer: {type(outcome).__name__}"
