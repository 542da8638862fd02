"""How long an idle `tessera serve` takes to answer /health/ready, against the 5 ms a probe may
take, with the bare /health/live of the same server beside it.

    .venv/bin/python -m bench.ready_probe [probes]

One probe at a time over one keep-alive connection, ready and live in turn, on the embedded
default (SQLite) and on PostgreSQL + Redis, after the lag reporter's first reading. The machine
the figures come from is shared, so the ratio to the bare endpoint is the steadier figure.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.service import serve, service_env
from tests.servers import postgres_cluster, start_redis

LIMIT_MS = 5.0


def timings(url: str, probes: int) -> dict[str, list[float]]:
    """Each path's answer times (ms), the two probed in turn so both meet the same noise."""
    taken: dict[str, list[float]] = {"/health/ready": [], "/health/live": []}
    with httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(20):  # warm: the connection, and the lag reporter's first reading
            http.get("/health/ready")
            time.sleep(0.01)
        for _ in range(probes):
            for path, times in taken.items():
                started = time.perf_counter()
                answer = http.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text
    return taken


def report(name: str, url: str, probes: int) -> None:
    taken = timings(url, probes)
    ready, live = taken["/health/ready"], taken["/health/live"]
    p50, p99 = statistics.median(ready), statistics.quantiles(ready, n=100)[98]
    live_p50, live_p99 = statistics.median(live), statistics.quantiles(live, n=100)[98]
    print(
        f"{name}: /health/ready p50 {p50:.2f} ms, p99 {p99:.2f} ms "
        f"(p50 / {LIMIT_MS:.0f} ms limit = {p50 / LIMIT_MS:.2f}, p99 / limit = "
        f"{p99 / LIMIT_MS:.2f}); /health/live p50 {live_p50:.2f} ms, p99 {live_p99:.2f} ms "
        f"(ready p50 / live p50 = {p50 / live_p50:.2f})"
    )


def main(probes: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="tessera-ready-"))
    (work / "sqlite").mkdir()
    (work / "pg").mkdir()
    env = service_env(work / "sqlite", None, None)
    with serve(env, 1, work / "sqlite-server.log") as server:
        report("SQLite", server.url, probes)
    with postgres_cluster() as cluster:
        redis = start_redis()
        try:
            env = service_env(work / "pg", cluster.new_database(), redis.url)
            with serve(env, 1, work / "pg-server.log") as server:
                report("PostgreSQL + Redis", server.url, probes)
        finally:
            redis.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
