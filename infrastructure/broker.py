"""Dramatiq: the broker that carries delivery keys to workers, and the actor that delivers.

Redis when REDIS_URL is set (durable, shared by every projector and worker process); otherwise
Dramatiq's in-memory broker with a worker inside `tessera serve`, the embedded default. Retries
with exponential backoff and the dead-letter queue are Dramatiq's own (the Retries middleware and
the broker's rejected-message queue), not hand-written loops.

So is the return of a dead worker's messages. Redis keeps, per worker, the messages it took and has
not acknowledged: the one in hand, the prefetched ones, and the delayed retries it holds in memory
until their time. Dramatiq's "maintenance" gives them back to the queue once the worker's heartbeat
is older than `heartbeat_timeout`; left to itself it runs on one command in a thousand with a 60 s
timeout, minutes after a crash. Each worker here runs it on a clock instead (see Keeper).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import dramatiq
import psycopg
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.middleware import CurrentMessage, Middleware, TimeLimit, default_middleware
from eventsourcing.persistence import InterfaceError, OperationalError
from opentelemetry import propagate, trace

from application.mail.outbox import Postman
from application.ports import DeliveryBusy, TransientMailError, Unavailable
from application.webhooks.courier import Courier
from infrastructure import metrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer("tessera.mail")

QUEUE = "mail"
ACTOR = "deliver_mail"
# Webhooks ride the same broker on a queue of their own, with worker threads of their own: a
# slow or dead receiver holds up neither the mail nor a request.
WEBHOOK_QUEUE = "webhooks"
WEBHOOK_ACTOR = "deliver_webhooks"


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


class Keeper:
    """A worker's heartbeat and Dramatiq's maintenance, every `interval` seconds.

    Its broker shares the worker's connection and id, so each call is the worker's heartbeat
    (alive while the process is, however busy its threads), and is made with maintenance on,
    so each call also requeues what workers silent for `heartbeat_timeout` had taken, on the
    queue and on the delay queue alike.
    """

    def __init__(
        self, worker_broker: RedisBroker, interval: float, queues: tuple[str, ...] = (QUEUE,)
    ) -> None:
        self._broker = RedisBroker(  # type: ignore[no-untyped-call]
            client=worker_broker.client,
            namespace=worker_broker.namespace,
            heartbeat_timeout=worker_broker.heartbeat_timeout,
            maintenance_chance=MAINTENANCE_SCALE,
        )
        self._broker.broker_id = worker_broker.broker_id
        self._interval = interval
        self._queues = queues
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mail-keeper", daemon=True)

    def tend(self) -> None:
        for queue in self._queues:
            self._broker.do_qsize(queue)
            self._broker.do_qsize(dq_name(queue))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tend()
            except Exception:  # Redis away: the consumers say so; try again next time
                log.warning("could not reach Redis for the worker heartbeat", exc_info=True)
            self._stop.wait(self._interval)

    def start(self) -> None:
        if self._thread.ident is None:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


class LaneMessages:
    """The webhook queue's messages: each wakes a courier for one lane (application.ports.
    WebhookQueue)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    def enqueue(self, lanes: list[str]) -> None:
        self._actor.send(lanes)


class MailBroker:
    def __init__(
        self,
        redis_url: str | None,
        postman: Postman,
        policy: RetryPolicy,
        dead_worker_after_ms: int = 15_000,
    ) -> None:
        """`dead_worker_after_ms`: how long a worker may go without a heartbeat before the
        messages it took are given to others (every process must use the same value)."""
        self.durable = redis_url is not None

        def broker() -> dramatiq.Broker:
            # Without Dramatiq's TimeLimit: every send has a deadline of its own (MAIL_TIMEOUT,
            # WEBHOOK_TIMEOUT) and a claim that lapses, and TimeLimit's watchdog thread never
            # ends: one more for every broker a process boots (a test run made 1,300).
            middleware = [m() for m in default_middleware if m is not TimeLimit]
            if redis_url:
                return RedisBroker(  # type: ignore[no-untyped-call]
                    url=redis_url,
                    namespace="tessera",
                    heartbeat_timeout=dead_worker_after_ms,
                    middleware=middleware,
                )
            return StubBroker(middleware=middleware)

        self.broker = broker()
        # The webhooks' broker: the same Redis, a connection and a worker of their own.
        self.webhook_broker = broker()
        self._keepers = [
            Keeper(b, interval=dead_worker_after_ms / 3_000, queues=(queue,))
            for b, queue in ((self.broker, QUEUE), (self.webhook_broker, WEBHOOK_QUEUE))
            if isinstance(b, RedisBroker)
        ]
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
        self._webhook_worker: dramatiq.Worker | None = None
        self._webhook_actor: Any = None

    def carry_webhooks(self, courier: Courier, policy: RetryPolicy) -> LaneMessages:
        """Declares the webhook actor: a message names some of one endpoint's lanes, whose
        due deliveries the courier posts, each lane in order. Its retries are the courier's own schedule, kept in the
        ledger; Dramatiq retries only what the database's absence stopped."""

        def deliver_webhooks(lanes: list[str]) -> None:
            courier.deliver(lanes)

        self._webhook_actor = dramatiq.actor(
            broker=self.webhook_broker,
            actor_name=WEBHOOK_ACTOR,
            queue_name=WEBHOOK_QUEUE,
            retry_when=_retry_when(policy),
            min_backoff=policy.min_backoff_ms,
            max_backoff=policy.max_backoff_ms,
        )(deliver_webhooks)
        return LaneMessages(self._webhook_actor)

    def enqueue(self, key: str) -> None:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        self.actor.send_with_options(args=(key,), trace=carrier)

    def join(self, timeout_ms: int = 10_000, queue: str = QUEUE) -> None:
        """Waits until the mail queue (or the webhooks') is empty (delayed retries included)."""
        broker = self.webhook_broker if queue == WEBHOOK_QUEUE else self.broker
        if isinstance(broker, StubBroker):
            broker.join(queue, timeout=timeout_ms, fail_fast=False)
        else:
            broker.join(queue, timeout=timeout_ms)

    def start_worker(self, threads: int = 2, poll_ms: int = 1000, webhook_threads: int = 4) -> None:
        """`poll_ms` is how long an idle worker waits for a message before looking up: only
        how fast it notices a stop, never how fast it notices a message."""
        self.broker.emit_after("process_boot")
        self._worker = dramatiq.Worker(
            self.broker, queues={QUEUE}, worker_threads=threads, worker_timeout=poll_ms
        )
        self._worker.start()
        if self._webhook_actor is not None:
            self.webhook_broker.emit_after("process_boot")
            self._webhook_worker = dramatiq.Worker(
                self.webhook_broker,
                queues={WEBHOOK_QUEUE},
                worker_threads=webhook_threads,
                worker_timeout=poll_ms,
            )
            self._webhook_worker.start()
        for keeper in self._keepers:
            keeper.start()

    def stop(self) -> None:
        for keeper in self._keepers:
            keeper.stop()
        # A worker's threads notice a stop only at their next poll (two polls: its workers, then
        # its consumers); stopped side by side, the two workers cost those polls once, not twice.
        stopping = [
            threading.Thread(target=worker.stop, kwargs={"timeout": 10_000}, daemon=True)
            for worker in (self._webhook_worker, self._worker)
            if worker is not None
        ]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()
        self._webhook_worker = self._worker = None
        self.broker.close()
        self.webhook_broker.close()
