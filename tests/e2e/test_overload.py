"""A flood of logins against a real server with production argon2 cost: beyond its hashing
capacity it answers 503 overloaded at once, and other endpoints stay fast meanwhile."""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.test_serve import tessera
from tests.servers import free_port, wait_for_port


def test_a_login_flood_is_shed_not_queued(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "HASH_CONCURRENCY": "1",
        "HASH_QUEUE": "2",
        "RATE_LIMITS_ENABLED": "false",
        "LOCKOUT_THRESHOLD": "100000",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "ARGON2_TIME_COST", "ARGON2_MEMORY_COST"):
        env.pop(name, None)
    process = subprocess.Popen(
        [tessera(), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    answers: list[tuple[int, str, float]] = []
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
                answers.append(
                    (
                        answer.status_code,
                        answer.headers.get("retry-after", ""),
                        time.perf_counter() - started,
                    )
                )

        flood = [threading.Thread(target=login, args=(n,)) for n in range(16)]
        for thread in flood:
            thread.start()
        time.sleep(0.1)
        live = []
        for _ in range(10):
            started = time.perf_counter()
            assert httpx.get(f"{base}/health/live", timeout=10).status_code == 200
            live.append(time.perf_counter() - started)
        for thread in flood:
            thread.join()
    finally:
        process.terminate()
        process.wait(timeout=10)
    shed = [a for a in answers if a[0] == 503]
    served = [a for a in answers if a[0] == 401]
    assert shed and served and len(shed) + len(served) == 16
    assert all(retry == "1" for _, retry, _ in shed)
    # Shed requests are answered without waiting for a hash; the served ones each cost one.
    assert statistics.median(t for *_, t in shed) < statistics.median(t for *_, t in served)
    assert statistics.median(live) < 0.2
