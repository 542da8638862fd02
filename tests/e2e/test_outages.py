"""Backing services going away under `tessera serve` as real processes.

PostgreSQL restarted under load: requests during the outage are answered 503 `unavailable`
quickly (never a 500, never a hang), a revoked token is never accepted, and the service recovers
by itself, losing no acknowledged write and no mail. Redis hung or stopped: the denylist fails
closed (503), and the service reconnects when Redis is back."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import PASSWORD, tessera
from tests.servers import (
    PostgresCluster,
    free_port,
    postgres_cluster,
    start_redis,
    wait_for_port,
)

# Outages under load, answer times and recovery measured: alone.
pytestmark = pytest.mark.serial

OUTAGE_SECONDS = float(os.environ.get("OUTAGE_SECONDS", "6"))


@dataclass(frozen=True)
class Answer:
    kind: str
    started: float
    seconds: float
    status: int  # 0: no HTTP answer at all
    code: str
    retry_after: str


class Load:
    """Threads sending a mix of requests until stopped, keeping every answer."""

    def __init__(self, base: str, token: str, revoked: str) -> None:
        self.base, self.token, self.revoked = base, token, revoked
        self.answers: list[Answer] = []
        self.registered: list[str] = []  # acknowledged with 201
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._names = iter(range(1_000_000))

    def _send(self, http: httpx.Client, kind: str) -> None:
        started = time.monotonic()
        name = ""
        try:
            if kind == "register":
                with self._lock:
                    name = f"load{next(self._names)}"
                answer = http.post(
                    "/api/auth/register",
                    json={"email": f"{name}@example.com", "username": name, "password": PASSWORD},
                )
            elif kind == "login":
                answer = http.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
            elif kind == "me":
                answer = http.get(
                    "/api/users/me", headers={"Authorization": f"Bearer {self.token}"}
                )
            else:
                answer = http.get(
                    "/api/users/me", headers={"Authorization": f"Bearer {self.revoked}"}
                )
        except httpx.HTTPError:
            status, code, retry_after = 0, "", ""
        else:
            status, retry_after = answer.status_code, answer.headers.get("retry-after", "")
            problem = answer.headers.get("content-type", "").startswith("application/problem+json")
            code = answer.json()["code"] if problem else ""
            if status >= 500:
                assert problem, (kind, status, answer.text)
        with self._lock:
            self.answers.append(
                Answer(kind, started, time.monotonic() - started, status, code, retry_after)
            )
            if kind == "register" and status == 201:
                self.registered.append(name)

    def _run(self, kinds: list[str]) -> None:
        with httpx.Client(base_url=self.base, timeout=60) as http:
            while not self._stop.is_set():
                for kind in kinds:
                    self._send(http, kind)
                time.sleep(0.02)

    def start(self) -> None:
        for kinds in (["register", "me"], ["login", "revoked"], ["me", "register"]):
            thread = threading.Thread(target=self._run, args=(kinds,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)


def eventually(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until `check` held; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def mails_to(mail_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in mail_dir.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        counts[str(message["To"])] = counts.get(str(message["To"]), 0) + 1
    return counts


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """Its own cluster: stopping the shared one would pull it from under other tests."""
    with postgres_cluster() as cluster:
        yield cluster


def test_a_postgresql_restart_under_load_is_a_quick_503_and_the_service_recovers(
    tmp_path: Path, own_cluster: PostgresCluster
) -> None:
    port = free_port()
    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        **FAST_ARGON2,
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": own_cluster.new_database(),
        "RATE_LIMITS_ENABLED": "false",
        "LOCKOUT_THRESHOLD": "100000",
        "NOTIFY_NEW_SIGN_IN": "false",
        "REQUIRE_VERIFIED_EMAIL": "false",
    }
    env.pop("REDIS_URL", None)  # the denylist lives in PostgreSQL too: it must fail closed
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([tessera(), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port)
        with httpx.Client(base_url=base, timeout=30) as http:
            registered = http.post(
                "/api/auth/register",
                json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
            )
            assert registered.status_code == 201
            token = http.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
            revoked = http.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
            revoked_token = revoked.json()["access_token"]
            assert (
                http.post(
                    "/api/auth/logout", headers={"Authorization": f"Bearer {revoked_token}"}
                ).status_code
                == 204
            )
        load = Load(base, token.json()["access_token"], revoked_token)
        load.start()
        time.sleep(2.0)
        own_cluster.pg_ctl("stop")
        stopped = time.monotonic()
        time.sleep(OUTAGE_SECONDS / 2)
        ready = httpx.get(f"{base}/health/ready", timeout=10)
        assert (ready.status_code, ready.json()["event_store"]) == (503, "unreachable")
        time.sleep(OUTAGE_SECONDS / 2)
        own_cluster.pg_ctl("start")
        restarted = time.monotonic()

        def serving() -> bool:
            recent = [a for a in load.answers if a.started > time.monotonic() - 1.0]
            return any(a.kind == "login" and a.status == 200 for a in recent) and any(
                a.kind == "me" and a.status == 200 for a in recent
            )

        recovery = eventually(serving, timeout=30)
        time.sleep(2.0)
        load.stop()
        assert server.poll() is None, "the server must recover without a restart"

        answers = load.answers
        during = [a for a in answers if stopped + 3.0 < a.started < restarted]
        print(
            f"\n{len(answers)} requests; {len(during)} started 3 s into the outage, median "
            f"{sorted(a.seconds for a in during)[len(during) // 2]:.3f} s, slowest "
            f"{max(a.seconds for a in answers):.2f} s; recovered {recovery:.1f} s after the restart"
        )
        assert not [a for a in answers if a.status == 0 or (a.status >= 500 and a.status != 503)]
        unavailable = [a for a in answers if a.status == 503]
        assert unavailable and all(
            a.code == "unavailable" and a.retry_after == "1" for a in unavailable
        )
        assert not [a for a in answers if a.kind == "revoked" and a.status == 200]
        assert during and all(a.status == 503 for a in during)
        slow = [a for a in during if a.seconds >= 1.0]
        assert not slow, slow
        assert max(a.seconds for a in answers) < 10.0, "no request hangs on the outage"

        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/health/ready").status_code == 200
            for name in load.registered:  # every acknowledged registration is there...
                answer = http.post("/api/auth/login", json={"login": name, "password": PASSWORD})
                assert answer.status_code == 200, (name, answer.text)
        expected = {f"{name}@example.com": 1 for name in load.registered}
        # ...and got its verification mail exactly once, the outage notwithstanding.
        eventually(
            lambda: (
                {k: v for k, v in mails_to(data_dir / "mail").items() if k in expected} == expected
            ),
            timeout=60,
        )
        assert all(n == 1 for n in mails_to(data_dir / "mail").values())
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_redis_stopped_or_hung_fails_closed_and_is_reconnected(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    """The denylist is in Redis: while Redis does not answer, no access token is accepted (503),
    so a revoked one can never slip through; when it answers again, the service carries on."""
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis_server = start_redis(directory=redis_dir)
    port = free_port()
    env = {
        **os.environ,
        **FAST_ARGON2,
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": postgres.new_database(),
        "REDIS_URL": redis_server.url,
        "REQUIRE_VERIFIED_EMAIL": "false",
    }
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([tessera(), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port)
        with httpx.Client(base_url=base, timeout=30) as http:
            assert (
                http.post(
                    "/api/auth/register",
                    json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
                ).status_code
                == 201
            )

            def bearer() -> dict[str, str]:
                tokens = http.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
                return {"Authorization": f"Bearer {tokens.json()['access_token']}"}

            live, revoked = bearer(), bearer()
            assert http.post("/api/auth/logout", headers=revoked).status_code == 204

            def me(headers: dict[str, str]) -> tuple[int, str, float]:
                started = time.monotonic()
                answer = http.get("/api/users/me", headers=headers)
                code = answer.json().get("code", "") if answer.status_code >= 400 else ""
                return answer.status_code, code, time.monotonic() - started

            assert me(live)[0] == 200 and me(revoked)[:2] == (401, "invalid_access_token")

            redis_server.process.send_signal(signal.SIGSTOP)  # hung: connections time out
            hung = [me(live), me(revoked)]
            redis_server.process.send_signal(signal.SIGCONT)
            assert [h[:2] for h in hung] == [(503, "unavailable")] * 2, hung
            assert all(h[2] < 5.0 for h in hung), hung  # a 1 s socket timeout, not a hang

            redis_server.stop()  # gone: connections refused
            gone = [me(live), me(revoked)]
            assert [g[:2] for g in gone] == [(503, "unavailable")] * 2, gone
            assert all(g[2] < 5.0 for g in gone), gone

            redis_server = start_redis(port=redis_server.port, directory=redis_dir)
            eventually(lambda: me(live)[0] == 200, timeout=15)
            assert me(revoked)[:2] == (401, "invalid_access_token")
            assert server.poll() is None, "reconnected without a restart"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        redis_server.stop()
