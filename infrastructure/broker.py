"""Dramatiq: the broker that carries delivery keys to workers, and the actor that delivers.

Redis when REDIS_URL is set (durable, shared by every projector and worker process); otherwise
Dramatiq's in-memory broker with a worker inside `tessera serve`, the embedded default. Retries
with exponential backoff and the dead-letter queue are Dramatiq's own (the Retries middleware and
the broker's rejected-message queue), not hand-written loops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dramatiq
import psycopg
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Middleware
from eventsourcing.persistence import InterfaceError, OperationalError
from opentelemetry import propagate, trace

from application.mail import Postman
from application.ports import DeliveryBusy, TransientMailError, Unavailable
from infrastructure import metrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer("tessera.mail")

QUEUE = "mail"
ACTOR = "deliver_mail"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 8
    min_backoff_ms: int = 1_000  # doubling from here, with jitter
    max_backoff_ms: int = 600_000


class DeadLetters(Middleware):
    """When a message is rejected for good (its last retry failed, or a permanent error),
    Dramatiq moves it to the dead-letter queue; this records that in the ledger and metrics."""

    def __init__(self, postman: Postman) -> None:
        self._postman = postman

    def after_nack(self, broker: Any, message: Any) -> None:
        if message.actor_name != ACTOR:
            return
        key = str(message.args[0])
        log.error("mail %s dead-lettered after %s retries", key, message.options.get("retries", 0))
        metrics.EMAILS_DEAD.inc()
        self._postman.give_up(key)


# Worth another try later: the mail server's 4xx or timeout, another worker's claim, and the
# database (ledger, event store) not answering. A database outage is no reason to give a mail up:
# dead-lettering it would lose it whenever the database came back before the ledger was marked.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientMailError,
    DeliveryBusy,
    Unavailable,
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def _retry_when(policy: RetryPolicy) -> Any:
    def retry(retries: int, error: BaseException) -> bool:
        return isinstance(error, TRANSIENT_ERRORS) and retries < policy.max_retries

    return retry


class MailBroker:
    def __init__(self, redis_url: str | None, postman: Postman, policy: RetryPolicy) -> None:
        self.durable = redis_url is not None
        self.broker: dramatiq.Broker = (
            RedisBroker(url=redis_url, namespace="tessera")  # type: ignore[no-untyped-call]
            if redis_url
            else StubBroker()
        )
        self.broker.add_middleware(DeadLetters(postman))
        self.broker.add_middleware(CurrentMessage())

        def deliver_mail(key: str) -> None:
            # The sender's trace context rides in the message, so the delivery is one trace
            # with the work that asked for it (W3C traceparent).
            message = CurrentMessage.get_current_message()
            carrier = dict(message.options.get("trace") or {}) if message else {}
            with tracer.start_as_current_span(
                "mail.deliver", context=propagate.extract(carrier), kind=trace.SpanKind.CONSUMER
            ):
                _deliver(key)

        def _deliver(key: str) -> None:
            try:
                kind = postman.deliver(key)
            except Exception as error:
                metrics.EMAIL_ATTEMPTS_FAILED.inc()
                log.warning("mail %s not delivered this time (%s)", key, type(error).__name__)
                raise
            if kind is not None:
                metrics.EMAILS_SENT.labels(kind=kind).inc()

        self.actor = dramatiq.actor(
            broker=self.broker,
            actor_name=ACTOR,
            queue_name=QUEUE,
            retry_when=_retry_when(policy),
            min_backoff=policy.min_backoff_ms,
            max_backoff=policy.max_backoff_ms,
        )(deliver_mail)
        self._worker: dramatiq.Worker | None = None

    def enqueue(self, key: str) -> None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        self.actor.send_with_options(args=(key,), trace=carrier)

    def join(self, timeout_ms: int = 10_000) -> None:
        """Waits until the mail queue is empty (delayed retries included)."""
        if isinstance(self.broker, StubBroker):
            self.broker.join(QUEUE, timeout=timeout_ms, fail_fast=False)
        else:
            self.broker.join(QUEUE, timeout=timeout_ms)

    def start_worker(self, threads: int = 2, poll_ms: int = 1000) -> None:
        """`poll_ms` is how long an idle worker waits for a message before looking up: only
        how fast it notices a stop, never how fast it notices a message."""
        self.broker.emit_after("process_boot")
        self._worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=poll_ms)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop(timeout=10_000)
            self._worker = None
        self.broker.close()
