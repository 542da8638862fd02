"""The stores a deployment profile builds, each named by its role and typed by the ports
(application/ports.py and the capabilities' own Protocols), never by a union of backends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import redis
from eventsourcing.persistence import TrackingRecorder

from application.factors.throttle import RateLimiter
from application.mail.outbox import MailLedger
from application.ports import ChangeMarks, OneTimeValues, RefreshChains, RevocationList
from application.privacy.personal_data import Deliveries, SessionHistory
from application.read_side.read_batch import ReadStore
from application.webhooks.records import WebhookLedger
from infrastructure.expired_state import Expiring
from infrastructure.projector import Lease, Projector


class RevocationStore(RevocationList, ChangeMarks, Protocol):
    """Revoked sessions and the accounts' change marks: one store answers both in one look-up."""

    def close(self) -> None: ...


class ChainStore(RefreshChains, Protocol):
    def close(self) -> None: ...


class OneTimeValueStore(OneTimeValues, Protocol):
    """Passkey challenges, OIDC states and sign-in codes, authorization codes and pending
    authorization requests: short-lived values, each taken once."""

    def close(self) -> None: ...


class MailRecords(MailLedger, Deliveries, Protocol):
    """The mail outbox's ledger: the projection's view, the postman's claims, the export's rows."""


class WebhookRecords(WebhookLedger, Protocol):
    """The webhook feed's deliveries: the projection's view (a TrackingRecorder too), the
    couriers' claims."""


class SessionRecords(ReadStore, SessionHistory, Protocol):
    """The sessions read model, which the personal-data export reads too."""


class Wakeups(Protocol):
    """Waking the projectors of other processes when a read waits for its caller's writes."""

    def notify(self, projection: str) -> None: ...

    def listen(
        self, projectors: Iterable[Projector], stop: threading.Event
    ) -> threading.Thread: ...


@dataclass(frozen=True)
class SharedState:
    """What every API process must agree on at once: revocations, refresh chains, one-time
    values and rate limits, all in one store."""

    revocations: RevocationStore
    chains: ChainStore
    one_time_values: OneTimeValueStore
    limiter: RateLimiter
    # The Redis client, when Redis holds them: /health/ready asks it a question of its own.
    redis: redis.Redis | None = None
    # The stores whose expired rows must be deleted (tables; Redis expires its keys itself).
    expiring: tuple[Expiring, ...] = ()


@dataclass(frozen=True)
class Stores:
    """Everything a profile builds beside the event log itself."""

    shared: SharedState
    mail_ledger: MailRecords
    webhook_ledger: WebhookRecords
    accounts: ReadStore
    sessions: SessionRecords
    audit: ReadStore
    erasures: TrackingRecorder  # the erasure finisher's position
    lease: Callable[[str], Lease]  # who runs the projection of that name
    wakeups: Wakeups | None  # None: each projector polls on its own
