"""Mail delivery with real processes: `tessera serve`, `tessera projector` and `tessera worker`
on PostgreSQL and Redis, sending through a real SMTP server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from infrastructure.lease import PostgresLease
from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import PASSWORD, tessera
from tests.servers import PostgresCluster, RedisServer, free_port, start_redis, wait_for_port
from tests.smtp import ScriptedHandler, SmtpServer

WORKER_KILLS = int(os.environ.get("WORKER_KILLS", "1"))


@dataclass
class Stack:
    env: dict[str, str]
    base: str
    metrics_port: int
    database_url: str
    redis: RedisServer
    smtp: SmtpServer
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        log = open(Path(self.env["DATA_DIR"]).parent / f"{name}.log", "ab")  # noqa: SIM115
        # A process group of its own, so that kill() takes `serve --workers N`'s children too,
        # as a container's death would, and leaves no orphan serving on the port.
        process = subprocess.Popen(
            [tessera(), *command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            process.wait(timeout=15)

    def register(self, who: str) -> None:
        answer = httpx.post(
            f"{self.base}/api/auth/register",
            json={"email": f"{who}@example.com", "username": who, "password": PASSWORD},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text

    def worker_metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

    def ledger(self) -> dict[str, int]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT status, count(*) FROM tessera_mail_deliveries GROUP BY 1")
            return {status: n for status, n in rows}


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    assert check(), "timed out"


@pytest.fixture
def stack_for(tmp_path: Path, postgres: PostgresCluster) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []
    servers: list[object] = []

    def make(handler: ScriptedHandler, projectors: int = 1, **settings: str) -> Stack:
        redis_server = start_redis()
        smtp = SmtpServer(handler).__enter__()
        servers.extend([redis_server, smtp])
        port, metrics_port = free_port(), free_port()
        database_url = postgres.new_database()
        env = {
            **os.environ,
            **FAST_ARGON2,
            "PORT": str(port),
            "DATA_DIR": str(tmp_path / "var"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_server.url,
            "PUBLIC_URL": "https://auth.example.test",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(smtp.port),
            # Timeouts, retries and redelivery at their defaults: what a deployment gets.
            "WORKER_METRICS_PORT": str(metrics_port),
            "NOTIFY_NEW_SIGN_IN": "false",
            **settings,
        }
        stack = Stack(
            env, f"http://127.0.0.1:{port}", metrics_port, database_url, redis_server, smtp
        )
        stack.start("serve", "serve")
        for n in range(projectors):
            stack.start(f"projector{n}", "projector")
        stack.start("worker", "worker")
        wait_for_port(port)
        wait_for_port(metrics_port)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.stop_all()
    for server in servers:
        server.__exit__(None, None, None) if isinstance(server, SmtpServer) else server.stop()  # type: ignore[attr-defined]


def test_a_registration_sends_exactly_one_verification_mail_with_a_working_link(
    stack_for: Callable[..., Stack],
) -> None:
    stack = stack_for(ScriptedHandler())
    stack.register("ada")
    eventually(lambda: len(stack.smtp.handler.to("ada@example.com")) == 1)
    (mail,) = stack.smtp.handler.to("ada@example.com")
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert mail.get_body(("html",)) is not None
    token = re.search(r"https://auth\.example\.test/verify-email\?token=([A-Za-z0-9_-]+)", text)
    assert token, text
    verified = httpx.post(f"{stack.base}/api/auth/verify-email", json={"token": token.group(1)})
    assert verified.status_code == 200
    time.sleep(1.0)  # a duplicate, were one coming, would arrive by now
    assert len(stack.smtp.handler.to("ada@example.com")) == 1
    assert stack.ledger() == {"sent": 1}
    assert stack.worker_metric('tessera_emails_sent_total{kind="verification"}') == 1


def test_an_smtp_server_that_refuses_twice_still_gets_the_mail_once(
    stack_for: Callable[..., Stack],
) -> None:
    stack = stack_for(ScriptedHandler(fail_first=2))
    stack.register("ada")
    eventually(lambda: len(stack.smtp.handler.to("ada@example.com")) == 1)
    assert stack.smtp.handler.attempts["ada@example.com"] == 3
    eventually(lambda: stack.worker_metric("tessera_email_attempts_failed_total") == 2)
    time.sleep(1.0)
    assert len(stack.smtp.handler.to("ada@example.com")) == 1


def test_a_permanently_refusing_server_ends_in_the_dead_letter_queue(
    stack_for: Callable[..., Stack],
) -> None:
    stack = stack_for(ScriptedHandler(always_refuse=True))
    stack.register("ada")
    eventually(lambda: stack.ledger() == {"dead": 1})
    assert stack.worker_metric("tessera_emails_dead_total") == 1
    dead_letters = redis.Redis.from_url(stack.redis.url).zcard("tessera:mail.XQ")
    assert dead_letters == 1
    assert stack.smtp.handler.attempts["ada@example.com"] == 1  # 5xx is final: no retries


@pytest.mark.serial  # kills the worker mid-SMTP, as `make chaos` does: alone
def test_killing_the_worker_mid_run_loses_no_mail_and_duplicates_none(
    stack_for: Callable[..., Stack],
) -> None:
    """WORKER_KILLS rounds (1 in `make test`; `make chaos` raises it) of kill -9 while the SMTP
    server is thinking about a recipient. Every mail arrives, once: a copy sent again because a
    worker died between the server's 250 and the ledger's "sent" (a window no SMTP client can
    close) carries the same Message-ID, so it is the same message to the receiver."""
    stack = stack_for(ScriptedHandler(rcpt_delay=0.5), RATE_LIMITS_ENABLED="false")
    people: list[str] = []
    for round_ in range(WORKER_KILLS):
        batch = [f"user{round_}x{n}" for n in range(6)]
        people += batch
        for who in batch:
            stack.register(who)
        eventually(lambda: stack.smtp.handler.recipients_in_progress > 0, timeout=20)
        stack.kill("worker")  # kill -9, in the middle of an SMTP conversation
        stack.start("worker", "worker")
    eventually(lambda: all(stack.smtp.handler.to(f"{w}@example.com") for w in people), timeout=90)
    time.sleep(2.0)
    copies = {
        w: [m["Message-ID"] for m in stack.smtp.handler.to(f"{w}@example.com")] for w in people
    }
    assert {w: len(set(ids)) for w, ids in copies.items()} == dict.fromkeys(people, 1), copies
    resent = {w: len(ids) for w, ids in copies.items() if len(ids) > 1}
    print(f"\n{WORKER_KILLS} kills, {len(people)} mails; re-sent after a kill: {resent}")
    assert stack.ledger() == {"sent": len(people)}


def test_two_projectors_share_the_work_and_a_standby_takes_over(
    stack_for: Callable[..., Stack],
) -> None:
    stack = stack_for(ScriptedHandler(), projectors=2)
    stack.register("ada")
    eventually(lambda: len(stack.smtp.handler.to("ada@example.com")) == 1)
    # Each projection's lease is one advisory lock, held by one process; find the outbox's.
    key = PostgresLease("", "mail_outbox").key & 0xFFFFFFFFFFFFFFFF
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute(
            "SELECT a.application_name, l.classid::bigint, l.objid::bigint FROM pg_locks l"
            " JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
        ).fetchall()
    # mail_outbox, accounts, sessions, audit_log, erasures, webhook_outbox: each held once
    assert len(rows) == 6
    holders = [int(name.split(":")[1]) for name, high, low in rows if (high << 32) | low == key]
    assert len(holders) == 1
    (holder,) = [name for name, p in stack.processes.items() if p.pid == holders[0]]
    stack.kill(holder)  # kill -9 the projector that holds the lease
    stack.register("bob")
    eventually(lambda: len(stack.smtp.handler.to("bob@example.com")) == 1)
    time.sleep(1.0)
    assert len(stack.smtp.handler.to("ada@example.com")) == 1
