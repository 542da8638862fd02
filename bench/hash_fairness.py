"""The hash gate's fairness: another account's login time while one account loops wrong
passwords, as a ratio to the same login on a quiet server (goal <= 2).

One `tessera serve` on the embedded default (one process: the gate is per process), production
argon2 cost and the default gate, lockout out of the way (a locked account is refused before
its hash, which would end the flood). Two seeded accounts, each from an address of its own
(X-Forwarded-For, from 127.0.0.1 as a trusted proxy): the other account logs in one login
after the other, on the quiet server, and while `BENCH_FAIRNESS_LOOPS` loops log in to the
flooding account with a wrong password as fast as answers come. A 503 is retried after its
Retry-After: the gate refuses the flood's excess at once, and loops that ignored it would
measure an HTTP flood of refusals (which rate limits and proxies answer), not the gate. The
quiet and the flooded phases alternate, `ROUNDS` times, each `BENCH_DURATION / ROUNDS` seconds
long: the machine is shared, and its spare capacity drifts within minutes.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench.report import Figure
from bench.seed import PASSWORD, drain_mail, seed_accounts, username
from bench.service import Server, serve, service_env
from interfaces.container import build
from interfaces.settings import load_settings

if TYPE_CHECKING:
    from bench.run import Bench

FAIRNESS_TARGET = 2.0
OTHER, FLOODER = 0, 1  # seeded account numbers
OTHER_IP, FLOOD_IP = "198.51.100.7", "203.0.113.1"
ROUNDS = 3
WARM = 3  # logins of the other account not counted: first connections, caches


class Flood:
    """Loops logging in to one account with a wrong password, from one address."""

    def __init__(self, server: Server, loops: int) -> None:
        self.server = server
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(loops)]

    def _loop(self) -> None:
        body = {"login": username(FLOODER), "password": "not the password, again"}
        headers = {"X-Forwarded-For": FLOOD_IP}
        with httpx.Client(base_url=self.server.url, timeout=60, headers=headers) as http:
            while not self._stop.is_set():
                answer = http.post("/api/auth/login", json=body)
                with self._lock:
                    self.statuses[answer.status_code] += 1
                if answer.status_code == 503:
                    self._stop.wait(float(answer.headers.get("retry-after", "1")))

    def __enter__(self) -> Flood:
        for thread in self._threads:
            thread.start()
        time.sleep(1.0)  # the gate full of the flood before the first timed login
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def other_logins(server: Server, seconds: float) -> tuple[list[float], Counter[int]]:
    """The other account's logins, one after the other for `seconds`: each one's milliseconds
    (200s only), and every status."""
    timings: list[float] = []
    statuses: Counter[int] = Counter()
    body = {"login": username(OTHER), "password": PASSWORD}
    headers = {"X-Forwarded-For": OTHER_IP}
    with httpx.Client(base_url=server.url, timeout=60, headers=headers) as http:
        for _ in range(WARM):
            http.post("/api/auth/login", json=body)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.perf_counter()
            status = http.post("/api/auth/login", json=body).status_code
            statuses[status] += 1
            if status == 200:
                timings.append((time.perf_counter() - began) * 1000)
    return timings, statuses


@dataclass
class Measured:
    quiet: list[float] = field(default_factory=list)  # the other account's logins, ms
    loaded: list[float] = field(default_factory=list)  # ... during the flood
    quiet_statuses: Counter[int] = field(default_factory=Counter)
    loaded_statuses: Counter[int] = field(default_factory=Counter)
    flood: Counter[int] = field(default_factory=Counter)  # the flood's answers


def measure(
    env: dict[str, str], password_hash: str, seconds: float, loops: int, log: Path
) -> Measured:
    """Seeds the two accounts, serves, and alternates quiet and flooded phases."""
    env = {**env, "TRUSTED_PROXIES": "127.0.0.1", "LOCKOUT_THRESHOLD": "1000000000"}
    container = build(load_settings(env))
    try:
        seed_accounts(container, 0, 2, password_hash)
        drain_mail(container)
    finally:
        container.close()
    measured = Measured()
    with serve(env, 1, log) as server:
        for _ in range(ROUNDS):
            timings, statuses = other_logins(server, seconds / ROUNDS)
            measured.quiet += timings
            measured.quiet_statuses += statuses
            with Flood(server, loops) as flood:
                timings, statuses = other_logins(server, seconds / ROUNDS)
            measured.loaded += timings
            measured.loaded_statuses += statuses
            measured.flood += flood.statuses
    return measured


class HashFairnessBench:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config

    def run(self) -> None:
        backend = "SQLite, 1 process"
        print(f"== hash gate fairness: {backend}", flush=True)
        measured = measure(
            service_env(self.bench.work / "fairness", None, None),
            self.bench.password_hash,
            float(self.config.duration),
            self.config.fairness_loops,
            self.bench.work / "fairness.log",
        )
        self.report(backend, measured)

    def report(self, backend: str, measured: Measured) -> None:
        quiet, loaded = measured.quiet, measured.loaded
        if not quiet or not loaded:
            raise RuntimeError(
                f"no login of the other account: {measured.quiet_statuses} "
                f"{measured.loaded_statuses}"
            )
        quiet_ms, loaded_ms = statistics.median(quiet), statistics.median(loaded)
        ratio = loaded_ms / quiet_ms
        refused = sum(n for status, n in measured.loaded_statuses.items() if status != 200)
        self.bench.report.add(
            Figure(
                scenario=f"login while another account floods ({self.config.fairness_loops} loops)",
                backend=backend,
                value=loaded_ms,
                unit="ms (median)",
                p50_ms=loaded_ms,
                p99_ms=_p99(loaded),
                limit_name="the same login on the quiet server, ms (median)",
                limit=quiet_ms,
                ratio=ratio,
                target=f"<= {FAIRNESS_TARGET:g}, none refused",
                met=ratio <= FAIRNESS_TARGET and refused == 0,
                note=(
                    f"{len(loaded)} logins during the flood (statuses "
                    f"{dict(measured.loaded_statuses)}), {len(quiet)} quiet (p99 "
                    f"{_p99(quiet):.0f} ms); the flood's answers {dict(measured.flood)}, a 503 "
                    f"retried after its Retry-After; {ROUNDS} rounds of quiet then flooded, "
                    f"{self.config.duration / ROUNDS:g} s each"
                ),
            )
        )


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    """`python -m bench.hash_fairness`: this scenario alone (BENCH_DURATION: seconds of each
    phase; BENCH_FAIRNESS_LOOPS: the flood's loops)."""
    from bench.config import load_config
    from bench.run import Bench  # the scenario's host; imported here, bench.run imports us

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    bench = Bench(load_config(), work)
    HashFairnessBench(bench).run()
    print()
    print(bench.report.table())
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
