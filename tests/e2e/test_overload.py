"""A flood of logins against a real server with production argon2 cost: beyond its hashing
capacity it answers 503 overloaded at once, and other endpoints, synchronous ones included
(they share the request threads with logins), stay fast meanwhile."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import tessera
from tests.servers import free_port, wait_for_port

# Floods a server with production-cost argon2 and times /health: alone.
pytestmark = pytest.mark.serial


@dataclass
class Flood:
    answers: list[tuple[int, str, float]] = field(default_factory=list)  # status, Retry-After, s
    live: list[float] = field(default_factory=list)  # /health/live, an async handler
    ready: list[float] = field(default_factory=list)  # /health/ready, a synchronous one

    @property
    def shed(self) -> list[tuple[int, str, float]]:
        return [a for a in self.answers if a[0] == 503]

    @property
    def served(self) -> list[tuple[int, str, float]]:
        return [a for a in self.answers if a[0] == 401]


def flood(tmp_path: Path, logins: int, **settings: str) -> Flood:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "RATE_LIMITS_ENABLED": "false",
        "LOCKOUT_THRESHOLD": "100000",
        **settings,
    }
    for name in ("DATABASE_URL", "REDIS_URL", "ARGON2_TIME_COST", "ARGON2_MEMORY_COST"):
        env.pop(name, None)
    process = subprocess.Popen(
        [tessera(), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    result = Flood()
    lock = threading.Lock()
    try:
        wait_for_port(port)
        base = f"http://127.0.0.1:{port}"

        def login(n: int) -> None:
            started = time.perf_counter()
            answer = httpx.post(
                f"{base}/api/auth/login",
                json={"login": f"user{n}", "password": "x" * 12},
                timeout=60,
            )
            with lock:
                result.answers.append(
                    (
                        answer.status_code,
                        answer.headers.get("retry-after", ""),
                        time.perf_counter() - started,
                    )
                )

        threads = [threading.Thread(target=login, args=(n,)) for n in range(logins)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)
        for _ in range(10):
            for path, timings in (("/health/live", result.live), ("/health/ready", result.ready)):
                started = time.perf_counter()
                assert httpx.get(f"{base}{path}", timeout=10).status_code == 200
                timings.append(time.perf_counter() - started)
        for thread in threads:
            thread.join()
    finally:
        process.terminate()
        process.wait(timeout=10)
    return result


def test_a_login_flood_is_shed_not_queued(tmp_path: Path) -> None:
    result = flood(tmp_path, logins=16, HASH_CONCURRENCY="1", HASH_QUEUE="2")
    assert result.shed and result.served
    assert len(result.shed) + len(result.served) == 16
    assert all(retry == "1" for _, retry, _ in result.shed)
    # Shed requests are answered without waiting for a hash; the served ones each cost one.
    assert statistics.median(t for *_, t in result.shed) < statistics.median(
        t for *_, t in result.served
    )
    assert statistics.median(result.live) < 0.2
    assert statistics.median(result.ready) < 0.2


def test_with_the_default_admission_a_flood_holds_no_request_thread_hostage(
    tmp_path: Path,
) -> None:
    """With the defaults (a slot per core, four queued per slot) the gate holds more logins
    than asyncio's default thread pool has threads (cores + 4): the server must have threads
    enough that the gate, not the pool, decides, and that other requests find one free."""
    result = flood(tmp_path, logins=24)
    assert result.shed, "beyond the gate's slots and queue, logins must be refused"
    assert all(retry == "1" for _, retry, _ in result.shed)
    assert statistics.median(t for *_, t in result.shed) < statistics.median(
        t for *_, t in result.served
    )
    assert statistics.median(result.ready) < 0.2
