"""Soak: `tessera serve` on PostgreSQL under a steady mixed load for SOAK_SECONDS, its resident
memory, open file descriptors and PostgreSQL connections sampled every second. Nothing may grow
without bound: the last third of the run must average within a bound of the first third (after
a warm-up), and no request may fail with a 5xx.

Without Redis, so that the server runs everything (API, projections, mail worker) and every
connection to its database is its own. Not in `make test`: `make soak SOAK_SECONDS=600`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import PASSWORD, tessera
from tests.servers import PostgresCluster, free_port, wait_for_port

SECONDS = float(os.environ.get("SOAK_SECONDS", "0"))
WARM_UP = 10.0  # pools fill and caches warm: not growth

pytestmark = [
    pytest.mark.skipif(SECONDS == 0, reason="soak runs with `make soak SOAK_SECONDS=N`"),
    pytest.mark.serial,  # load for minutes, growth measured: alone
]


@dataclass(frozen=True)
class Sample:
    at: float
    rss_mib: float
    fds: int
    pg_connections: int


def process_tree(root: int) -> list[int]:
    """The server and its children (uvicorn's worker processes)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Load:
    """Each thread plays one user's life, over and over: register, log in, read and edit the
    profile, refresh, fail a login, ask for a reset, log out."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.statuses: Counter[int] = Counter()
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _count(self, answer: httpx.Response) -> httpx.Response:
        with self._lock:
            self.statuses[answer.status_code] += 1
        return answer

    def run(self, thread: int) -> None:
        """One user's life after another; a request with no answer at all counts as status 0."""
        with httpx.Client(base_url=self.base, timeout=30) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    self.live(http, f"soak{thread}x{n}")
                except httpx.HTTPError:
                    with self._lock:
                        self.statuses[0] += 1

    def live(self, http: httpx.Client, name: str) -> None:
        """Register, log in, read and edit the profile, refresh, fail a login, ask for a reset,
        log out."""
        self._count(
            http.post(
                "/api/auth/register",
                json={
                    "email": f"{name}@example.com",
                    "username": name,
                    "password": PASSWORD,
                },
            )
        )
        tokens = self._count(
            http.post("/api/auth/login", json={"login": name, "password": PASSWORD})
        ).json()
        if "access_token" not in tokens:
            return
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        for _ in range(3):
            self._count(http.get("/api/users/me", headers=bearer))
        self._count(http.put("/api/users/me", headers=bearer, json={"display_name": name}))
        refreshed = self._count(
            http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        ).json()
        if "access_token" not in refreshed:
            return
        self._count(http.post("/api/auth/login", json={"login": name, "password": "wrong!!!"}))
        self._count(http.post("/api/auth/forgot-password", json={"email": f"{name}@example.com"}))
        self._count(http.get("/health/ready"))
        self._count(
            http.post(
                "/api/auth/logout",
                headers={"Authorization": f"Bearer {refreshed['access_token']}"},
            )
        )


def thirds(samples: list[Sample], field: str) -> tuple[float, float, float]:
    values = [getattr(s, field) for s in samples]
    size = len(values) // 3
    return (
        statistics.fmean(values[:size]),
        statistics.fmean(values[size : 2 * size]),
        statistics.fmean(values[2 * size :]),
    )


def test_a_long_mixed_load_grows_nothing_without_bound(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    port = free_port()
    database_url = postgres.new_database()
    env = {
        **os.environ,
        **FAST_ARGON2,
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": database_url,
        "RATE_LIMITS_ENABLED": "false",
        "REQUIRE_VERIFIED_EMAIL": "false",
        "LOCKOUT_THRESHOLD": "1000000",
        "NOTIFY_NEW_SIGN_IN": "false",
    }
    env.pop("REDIS_URL", None)
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([tessera(), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    load = Load(f"http://127.0.0.1:{port}")
    samples: list[Sample] = []
    try:
        wait_for_port(port)
        threads = [threading.Thread(target=load.run, args=(n,), daemon=True) for n in range(4)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
            dbname = database_url.rsplit("/", 1)[1]
            while time.monotonic() - started < SECONDS:
                time.sleep(1.0)
                tree = process_tree(server.pid)
                (connections,) = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
                ).fetchone() or (0,)
                samples.append(
                    Sample(
                        at=time.monotonic() - started,
                        rss_mib=sum(rss_mib(pid) for pid in tree),
                        fds=sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in tree),
                        pg_connections=int(connections),
                    )
                )
        load.stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert server.poll() is None
    finally:
        load.stop.set()
        server.terminate()
        server.wait(timeout=30)
        log.close()

    steady = [s for s in samples if s.at > WARM_UP]
    assert len(steady) >= 6, "SOAK_SECONDS too short to compare thirds of the run"
    requests = sum(load.statuses.values())
    print(
        f"\nsoak {SECONDS:.0f} s: {requests} requests ({requests / SECONDS:.0f}/s), "
        f"statuses {dict(sorted(load.statuses.items()))}"
    )
    print("                 first third  middle third  last third   peak")
    for field, unit in (("rss_mib", "MiB"), ("fds", ""), ("pg_connections", "")):
        first, middle, last = thirds(steady, field)
        peak = max(getattr(s, field) for s in steady)
        print(f"  {field:15} {first:10.1f} {middle:12.1f} {last:11.1f} {peak:7.1f} {unit}")
    assert not [s for s in load.statuses if s >= 500 or s == 0], load.statuses
    assert load.statuses[201] > 0 and load.statuses[200] > 0
    rss, fds, connections = (thirds(steady, f) for f in ("rss_mib", "fds", "pg_connections"))
    assert rss[2] <= rss[0] * 1.2 + 16, rss  # memory: a leak shows as steady growth
    assert fds[2] <= fds[0] + 16, fds  # descriptors: sockets or files never closed
    assert connections[2] <= connections[0] + 5, connections  # pools bound their connections
    assert max(s.pg_connections for s in steady) <= 60
