"""The deliveries of events to endpoints, as the feed records them and couriers take them.

A delivery waits in its lane: one endpoint and one account. A lane is sent strictly in the order
its deliveries were recorded (log order), one at a time: its head is claimed, posted, and closed
(sent, or dead after the last retry) before the next is tried, so a failing delivery holds the
account's later events for that endpoint, and no other lane.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from eventsourcing.persistence import Tracking

QUEUED, SENDING, SENT, DEAD = "queued", "sending", "sent", "dead"
# Never sent: its event's type is no longer one its endpoint asks for.
DROPPED = "dropped"


@dataclass(frozen=True)
class QueuedDelivery:
    """A delivery as the feed (or a replay) records it. `body` is the JSON body without the
    person's values; `sealed_personal` holds those, sealed under the person's data key (or "")."""

    id: str  # the webhook-id: stable per event and endpoint (or replay)
    endpoint_id: str
    account_id: str
    position: int
    type: str
    body: str
    sealed_personal: str
    replay_id: str | None = None

    @property
    def lane(self) -> str:
        return lane_of(self.endpoint_id, self.account_id)


@dataclass(frozen=True)
class ClaimedDelivery:
    """A lane's head, now one courier's to post."""

    id: str
    lane: str
    endpoint_id: str
    account_id: str
    type: str
    body: str
    sealed_personal: str
    attempts: int  # this one included


@dataclass(frozen=True)
class Settlement:
    """What came of a round's posts to one endpoint: the answered deliveries (id, status code),
    and the claimed ones never tried (back in their lanes, the claim's count of tries undone).
    Recorded with the next round's claim, in one commit."""

    endpoint_id: str
    sent: Sequence[tuple[str, int]] = ()
    released: Sequence[str] = ()

    def __bool__(self) -> bool:
        return bool(self.sent or self.released)


@dataclass(frozen=True)
class ReplayCursor:
    """How far a replay has recorded its deliveries: it goes on from `next_position` to
    `until_position` (both log positions), whichever process takes it up."""

    replay_id: str
    endpoint_id: str
    next_position: int
    until_position: int


def lane_of(endpoint_id: str, account_id: str) -> str:
    return f"{endpoint_id}:{account_id}"


def endpoint_of(lane: str) -> str:
    return lane.split(":", 1)[0]


# Lanes a message carries: one endpoint's, so one courier posts them over its connections.
LANES_A_MESSAGE = 100


def messages(lanes: Iterable[str]) -> list[list[str]]:
    """The lanes, each once, grouped by endpoint into messages of at most LANES_A_MESSAGE."""
    by_endpoint: dict[str, list[str]] = {}
    for lane in dict.fromkeys(lanes):
        by_endpoint.setdefault(endpoint_of(lane), []).append(lane)
    return [
        group[start : start + LANES_A_MESSAGE]
        for group in by_endpoint.values()
        for start in range(0, len(group), LANES_A_MESSAGE)
    ]


class WebhookLedger(Protocol):
    def record(
        self, deliveries: list[QueuedDelivery], at: datetime, tracking: Tracking | None
    ) -> None:
        """Records the deliveries (each once: a second record of one id changes nothing), and
        the projection's position with them in one transaction when `tracking` is given."""
        ...

    def start_replay(self, cursor: ReplayCursor, at: datetime, ttl: timedelta) -> None:
        """Keeps a new replay's cursor, held by its caller for `ttl`."""
        ...

    def record_replayed(
        self,
        deliveries: list[QueuedDelivery],
        replay_id: str,
        next_position: int,
        at: datetime,
        ttl: timedelta,
    ) -> None:
        """Records a batch of a replay's deliveries and moves its cursor past them, in one
        transaction (its hold renewed for `ttl`); a cursor past its end is closed."""
        ...

    def claim_replays(self, at: datetime, ttl: timedelta) -> list[ReplayCursor]:
        """The unfinished replays no process holds (their process died, or their broker
        refused), now held by the caller for `ttl`."""
        ...

    def claim_heads(
        self,
        lanes: Sequence[str],
        at: datetime,
        ttl: timedelta,
        settling: Settlement | None = None,
    ) -> list[ClaimedDelivery]:
        """The heads of these lanes that are due, claimed in one transaction (a lane that is
        empty, not yet due, or whose head another courier holds gives none), after recording
        `settling` in the same one: a lane whose head was just sent gives its next."""
        ...

    def settle(self, settling: Settlement, at: datetime) -> None:
        """Records what came of a round (sent ones closed, and the endpoint's failures with
        them; untried ones back in their lanes), in one transaction."""
        ...

    def drop(self, delivery_ids: Sequence[str], at: datetime) -> None:
        """Claimed, but of a type the endpoint no longer wants: closed unsent (kept, to be seen
        among its deliveries), the claim's count of tries undone."""
        ...

    def failed(
        self,
        delivery_id: str,
        status: int | None,
        error: str,
        at: datetime,
        next_try_at: datetime | None,
    ) -> None:
        """A failed try: queued again for `next_try_at`, or dead (None) after the last one."""
        ...

    def due_lanes(
        self, at: datetime, limit: int = 1000, quiet_for: timedelta = timedelta(0)
    ) -> list[str]:
        """Lanes whose head is due (a retry's time come, a message lost, a claim run out), of
        endpoints not paused; a queued head only once untouched for `quiet_for` (recorded,
        failed or released that long ago)."""
        ...

    def failing_since(self, endpoint_id: str, at: datetime) -> datetime:
        """Notes a failure of the endpoint; returns when its failures began (since the last
        success)."""
        ...

    def pause(self, endpoint_id: str, paused: bool) -> None:
        """A disabled endpoint's lanes wait (their deliveries kept) until it is enabled."""
        ...

    def discard(self, endpoint_id: str) -> None:
        """A removed endpoint's deliveries that were still to be sent, and its replays."""
        ...

    def of_endpoint(self, endpoint_id: str, limit: int) -> list[dict[str, Any]]:
        """The endpoint's latest deliveries, newest first."""
        ...
