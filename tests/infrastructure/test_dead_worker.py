"""A worker's death on Redis: what it had taken (a message in hand, prefetched ones, delayed
retries it kept in memory) goes back to the queue once its heartbeat is MAIL_REDELIVER_AFTER
old, and a live worker, however long it goes without fetching, keeps what it holds.

MAIL_REDELIVER_AFTER is what these tests are about, so they shorten it to 3 s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dramatiq import Consumer, Message, MessageProxy
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name

from infrastructure.broker import QUEUE, Keeper
from interfaces.container import Container, build
from interfaces.settings import load_settings
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FAST_ARGON2
from tests.servers import PostgresCluster

# Heartbeats and hand-backs in real seconds: a starved worker would miss them.
pytestmark = pytest.mark.serial

SILENCE_MS = 3_000


@pytest.fixture
def production(tmp_path: Path, postgres: PostgresCluster, redis_url: str) -> Iterator[Container]:
    settings = load_settings(
        {
            **FAST_ARGON2,
            "DATA_DIR": str(tmp_path / "var"),
            "DATABASE_URL": postgres.new_database(),
            "REDIS_URL": redis_url,
            "MAIL_REDELIVER_AFTER": str(SILENCE_MS // 1000),
        }
    )
    container = build(settings)
    yield container
    container.close()


def worker_broker(url: str) -> RedisBroker:
    """Another worker process's broker, as Dramatiq's worker drives it."""
    broker = RedisBroker(url=url, namespace="tessera", heartbeat_timeout=SILENCE_MS)  # type: ignore[no-untyped-call]
    broker.declare_queue(QUEUE)
    return broker


def take(consumer: Consumer) -> MessageProxy:
    """The next message, fetched into this worker's unacknowledged set as a worker does."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = next(consumer)
        if message is not None:
            return message
    raise AssertionError("nothing to take")


def waiting(url: str) -> int:
    client = redis.Redis.from_url(url)
    return int(client.llen(f"tessera:{QUEUE}")) + int(client.llen(f"tessera:{dq_name(QUEUE)}"))


def mails(container: Container) -> list[Path]:
    return sorted((container.settings.data_path / "mail").glob("*.eml"))


def test_what_a_dead_worker_took_is_delivered_by_another_once_its_heartbeat_is_old(
    production: Container, redis_url: str
) -> None:
    for name in ("ada", "bob"):
        production.registration.register(f"{name}@example.com", name, PASSWORD)
    production.projector("mail_outbox").catch_up()  # two messages queued, no worker yet
    dead = worker_broker(redis_url)
    in_hand = dead.consume(QUEUE, prefetch=10, timeout=100)
    take(in_hand)  # ada's, being sent when the worker dies
    bob = take(in_hand)
    # bob's first try failed: Dramatiq's Retries puts it on the delay queue, acks the original,
    # and the same worker takes it from there to keep it in memory until its time.
    dead.enqueue(bob.copy(), delay=100)
    in_hand.ack(bob)
    take(dead.consume(dq_name(QUEUE), prefetch=10, timeout=100))
    assert waiting(redis_url) == 0
    died = time.monotonic()  # the dead broker is never used again: no more heartbeats

    production.mail_broker.start_worker(threads=1, poll_ms=100)
    time.sleep(1.0)
    assert mails(production) == [], "a worker silent for less than the limit keeps its mail"
    while len(mails(production)) < 2:
        assert time.monotonic() - died < 3 * SILENCE_MS / 1000, "not given back in time"
        time.sleep(0.1)
    time.sleep(0.5)
    assert len(mails(production)) == 2
    assert production.outbox._ledger.counts() == {"sent": 2}


def test_a_live_worker_that_fetches_nothing_keeps_what_it_holds(redis_url: str) -> None:
    busy = worker_broker(redis_url)
    busy.enqueue(Message(QUEUE, "deliver_mail", ("k",), {}, {}))
    take(
        busy.consume(QUEUE, prefetch=1, timeout=100)
    )  # in hand, and all its threads stay busy: its consumers fetch nothing
    heart = Keeper(busy, interval=SILENCE_MS / 3_000)
    heart.start()
    sweeper = Keeper(worker_broker(redis_url), interval=0.2)  # another worker, tending Redis
    sweeper.start()
    try:
        time.sleep(2.5 * SILENCE_MS / 1000)
        assert waiting(redis_url) == 0, "a beating worker's message was taken from it"
        heart.stop()  # the worker dies
        deadline = time.monotonic() + 2.5 * SILENCE_MS / 1000
        while waiting(redis_url) == 0:
            assert time.monotonic() < deadline, "a dead worker's message never came back"
            time.sleep(0.1)
    finally:
        heart.stop()
        sweeper.stop()
