"""Mail after a crash, at the default settings: `tessera serve`, `tessera projector` and `tessera
worker` on PostgreSQL and Redis, an SMTP server answering 451 to each address's first two
messages. The worker is killed (kill -9) holding mail in every state a worker holds it: in the
middle of an SMTP conversation, prefetched, and as delayed retries waiting in its memory; then the
projector is killed between recording a delivery and enqueuing it. After each restart every mail
arrives within 60 s, each once (one Message-ID per address), and the ledger ends all sent."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis

from tests.e2e.test_chaos import stack_for
from tests.e2e.test_mail_delivery import Stack
from tests.smtp import ScriptedHandler

# A promise in seconds (mail within a minute of a crash): alone.
pytestmark = pytest.mark.serial

__all__ = ["stack_for"]

PROMISE = 60.0  # seconds from a restart to the last mail a crash left behind


def held_retries(stack: Stack) -> int:
    """Delayed retries that a worker has taken from Redis and keeps in memory until their time
    (Dramatiq's per-worker set of unacknowledged messages of the delay queue)."""
    client = redis.Redis.from_url(stack.redis.url)
    return sum(int(client.scard(key)) for key in client.scan_iter("tessera:__acks__.*.mail.DQ"))


def delivered_within(stack: Stack, people: list[str], limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if all(stack.smtp.handler.to(f"{who}@example.com") for who in people):
            return time.monotonic() - started
        time.sleep(0.2)
    missing = [w for w in people if not stack.smtp.handler.to(f"{w}@example.com")]
    raise AssertionError(f"{len(missing)} of {len(people)} mails not sent in {limit} s: {missing}")


def test_mail_held_by_a_killed_worker_or_projector_goes_out_once_within_a_minute(
    stack_for: Callable[..., Stack],
) -> None:
    handler = ScriptedHandler(fail_first=2, rcpt_delay=0.2)
    stack = stack_for(handler, RATE_LIMITS_ENABLED="false")

    # The worker dies mid-SMTP, with prefetched messages and with retries waiting in its memory.
    first = [f"mailw{n}" for n in range(15)]
    for who in first:
        stack.register(who)
    deadline = time.monotonic() + 20
    while not (held_retries(stack) >= 2 and handler.recipients_in_progress > 0):
        assert time.monotonic() < deadline, "the worker never held retries mid-conversation"
        time.sleep(0.02)
    held = held_retries(stack)
    stack.kill("worker")
    undelivered = [w for w in first if not handler.to(f"{w}@example.com")]
    assert undelivered, "the kill came too late to test anything"
    stack.start("worker", "worker")
    after_worker = delivered_within(stack, first, PROMISE)

    # The projector dies after recording a delivery, before enqueuing it: Redis is stopped, so
    # the projector records the first of these and waits on the enqueue until it is killed.
    second = [f"mailp{n}" for n in range(15)]
    stack.kill("projector0")
    for who in second:
        stack.register(who)
    stack.redis.process.send_signal(signal.SIGSTOP)
    try:
        stack.start("projector0", "projector")
        deadline = time.monotonic() + 20
        while sum(stack.ledger().values()) == len(first):
            assert time.monotonic() < deadline, "the projector recorded nothing"
            time.sleep(0.05)
        time.sleep(0.5)
        recorded = stack.ledger()
        stack.kill("projector0")
    finally:
        stack.redis.process.send_signal(signal.SIGCONT)
    assert recorded.get("queued") == 1, recorded  # recorded, and never enqueued
    stack.start("projector0", "projector")
    after_projector = delivered_within(stack, second, PROMISE)

    time.sleep(2.0)  # a second copy, were one coming, would be on its way by now
    everyone = first + second
    ids = {w: {m["Message-ID"] for m in handler.to(f"{w}@example.com")} for w in everyone}
    assert all(len(message_ids) == 1 for message_ids in ids.values()), ids
    assert stack.ledger() == {"sent": len(everyone)}
    copies = len(handler.delivered) - len(everyone)  # the SMTP window: same Message-ID
    print(
        f"\nworker killed holding {held} retries and {len(undelivered)} undelivered mails: all "
        f"sent {after_worker:.1f} s after its restart; projector killed before an enqueue: all "
        f"sent {after_projector:.1f} s after its restart; {copies} re-sent copies"
    )
