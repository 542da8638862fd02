"""Chaos: kill -9 at random moments of `tessera serve`, the projectors and the mail worker (on
PostgreSQL and Redis, sending to a real SMTP server) while registrations and logins keep coming.
Afterwards nothing acknowledged is lost and nothing is doubled: every 201 is an account that logs
in, has exactly one Registered event, and got exactly one verification mail (one Message-ID);
the delivery ledger ends all sent.

`make test` runs 3 rounds; `make chaos CHAOS_ROUNDS=20` runs more (CHAOS_SEED replays a run).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from interfaces.container import build
from interfaces.settings import Settings
from tests.e2e.test_mail_delivery import Stack, eventually, stack_for
from tests.e2e.test_serve import PASSWORD
from tests.servers import wait_for_port
from tests.smtp import ScriptedHandler

# Processes killed with -9 under load, then recovery within deadlines: alone, never beside other work.
pytestmark = pytest.mark.serial

__all__ = ["stack_for"]  # the fixture, shared with the mail delivery tests

ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "3"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.SystemRandom().randrange(1 << 30))))
VICTIMS = {
    "serve": "serve",
    "projector0": "projector",
    "projector1": "projector",
    "worker": "worker",
}


@dataclass
class Traffic:
    """Registrations and logins from a few threads, tolerant of a server that is being killed."""

    base: str
    acknowledged: list[str] = field(default_factory=list)  # 201s
    unknown: list[str] = field(default_factory=list)  # no answer: may or may not exist
    statuses: dict[int, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            name = f"chaos{worker}x{n}"
            n += 1
            try:
                answer = httpx.post(
                    f"{self.base}/api/auth/register",
                    json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
                    timeout=30,
                )
                if self.acknowledged:
                    httpx.post(
                        f"{self.base}/api/auth/login",
                        json={"login": self.acknowledged[0], "password": PASSWORD},
                        timeout=30,
                    )
            except httpx.HTTPError:
                with self.lock:
                    self.unknown.append(name)
                time.sleep(0.2)  # the server is down: do not spin
                continue
            with self.lock:
                self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 201:
                    self.acknowledged.append(name)


def registered_events(stack: Stack) -> dict[str, int]:
    """How many Registered events each address has in the event store (the addresses are
    sealed there: read through an event log with the stack's own keys)."""
    settings = Settings(data_dir=stack.env["DATA_DIR"], database_url=stack.database_url)
    container = build(settings)
    try:
        log = container.log
        counts: dict[str, int] = {}
        for notification in log.recorder.select_notifications(start=1, limit=10_000_000):
            if notification.topic.endswith("Account.Registered"):
                email = str(vars(log.mapper.to_domain_event(notification))["email"])
                counts[email] = counts.get(email, 0) + 1
        return counts
    finally:
        container.close()


def test_random_kills_lose_and_double_nothing(stack_for: Callable[..., Stack]) -> None:
    rng = random.Random(SEED)
    print(f"\nchaos: {ROUNDS} rounds, CHAOS_SEED={SEED}")
    stack = stack_for(
        ScriptedHandler(rcpt_delay=0.05),
        projectors=2,
        RATE_LIMITS_ENABLED="false",
        REQUIRE_VERIFIED_EMAIL="false",
    )
    traffic = Traffic(stack.base)
    threads = [threading.Thread(target=traffic.run, args=(n,), daemon=True) for n in range(3)]
    for thread in threads:
        thread.start()
    kills: dict[str, int] = {}
    try:
        for _ in range(ROUNDS):
            time.sleep(rng.uniform(0.2, 2.0))
            victim = rng.choice(sorted(VICTIMS))
            stack.kill(victim)  # kill -9
            kills[victim] = kills.get(victim, 0) + 1
            time.sleep(rng.uniform(0.0, 1.0))
            stack.start(victim, VICTIMS[victim])
            if victim == "serve":
                wait_for_port(int(stack.base.rsplit(":", 1)[1]))
        time.sleep(1.0)
    finally:
        traffic.stop.set()
        for thread in threads:
            thread.join(timeout=60)
    print(f"kills {kills}; answers {traffic.statuses}; {len(traffic.unknown)} unanswered")
    assert traffic.acknowledged, "the service answered nothing between the kills"
    assert set(traffic.statuses) <= {201, 503}, traffic.statuses  # 503: a dependency restarting

    with httpx.Client(base_url=stack.base, timeout=30) as http:
        for name in traffic.acknowledged:
            answer = http.post("/api/auth/login", json={"login": name, "password": PASSWORD})
            assert answer.status_code == 200, (name, answer.text)
    events = registered_events(stack)
    assert all(n == 1 for n in events.values()), {k: n for k, n in events.items() if n > 1}
    acknowledged = {f"{name}@example.com" for name in traffic.acknowledged}
    assert acknowledged <= set(events)
    # Unanswered requests may have been registered or not; either way each has at most one.
    assert set(events) <= acknowledged | {f"{name}@example.com" for name in traffic.unknown} | {
        f"{name}@example.com" for name in traffic.acknowledged
    }

    def mailed() -> dict[str, set[str]]:
        ids: dict[str, set[str]] = {}
        for message in list(stack.smtp.handler.delivered):
            ids.setdefault(str(message["To"]), set()).add(str(message["Message-ID"]))
        return ids

    eventually(lambda: set(mailed()) >= set(events), timeout=120)
    eventually(lambda: stack.ledger() == {"sent": len(events)}, timeout=60)
    ids = mailed()
    assert set(ids) == set(events), "a mail to no account, or an account with no mail"
    assert all(len(message_ids) == 1 for message_ids in ids.values()), ids
    copies = len(stack.smtp.handler.delivered) - len(ids)
    print(
        f"{len(events)} accounts ({len(acknowledged)} acknowledged), {len(ids)} mails, each "
        f"once; {copies} re-sent copies with the same Message-ID"
    )
