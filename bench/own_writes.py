"""What reading one's own writes costs: a signed-in user changes their display name, then at
once reads their activity, which must show the change (`Tessera-Read-Behind: 0` and the
`ProfileUpdated` entry on top); the limit is the same read when nothing was written just
before, so no wait is possible, measured in the same rounds.

On PostgreSQL + Redis (`tessera serve --workers N` and one `tessera projector`, which polls) and
on the embedded default (one `tessera serve`, whose projections run in-process and are nudged
by a waiting read). Latency, not throughput: a few users read sequentially, one thread each.
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench.report import Figure
from bench.seed import PASSWORD, drain_mail, seed_accounts, username
from bench.service import Server, serve, service_env
from interfaces.container import build
from interfaces.settings import load_settings
from tests.servers import PostgresCluster, postgres_cluster, start_redis

if TYPE_CHECKING:
    from bench.run import Bench

READ_BEHIND = "Tessera-Read-Behind"
ACTIVITY = "/api/users/me/activity?limit=1"
TESSERA = str(Path(sys.executable).parent / "tessera")
WARM_ROUNDS = 3  # per user, not counted: the login's own events, first connections


@dataclass
class Rounds:
    """One user's timed reads, in milliseconds."""

    after_write: list[float] = field(default_factory=list)
    unwritten: list[float] = field(default_factory=list)
    behind: int = 0  # reads after a write that answered Tessera-Read-Behind > 0 (timed out)
    writes_ms: list[float] = field(default_factory=list)


class OwnWritesBench:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config

    def run(self) -> None:
        self.postgres()
        if self.config.sqlite:
            self.sqlite()

    def postgres(self) -> None:
        c = self.config
        backend = f"PG+Redis, {c.server_workers} workers + 1 projector"
        print(f"== read your own writes: {backend}", flush=True)
        with postgres_cluster(durable=True) as cluster:
            redis = start_redis()
            try:
                env = service_env(self.bench.work / "own-pg", cluster.new_database(), redis.url)
                self.measure(env, c.server_workers, backend, cluster)
            finally:
                redis.stop()

    def sqlite(self) -> None:
        backend = "SQLite, 1 process"
        print(f"== read your own writes: {backend}", flush=True)
        env = service_env(self.bench.work / "own-sqlite", None, None)
        self.measure(env, 1, backend, None)

    def measure(
        self, env: dict[str, str], workers: int, backend: str, cluster: PostgresCluster | None
    ) -> None:
        users = self.config.own_writes_users
        work = Path(env["DATA_DIR"])
        work.mkdir(parents=True)
        settings = load_settings(env)
        container = build(settings)
        try:
            seed_accounts(container, 0, users, self.bench.password_hash)
            if container.runs_in_one_process:
                drain_mail(container)
        finally:
            container.close()
        projector = None
        if cluster is not None:
            log = (work / "projector.log").open("ab")
            projector = subprocess.Popen([TESSERA, "projector"], env=env, stdout=log, stderr=log)
        try:
            with serve(env, workers, work / "server.log") as server:
                self.bench.warm(server)
                tokens = sign_in(server, users)
                rounds = self.drive(server, tokens)
        finally:
            if projector is not None:
                projector.terminate()
                projector.wait(timeout=20)
        self.report(rounds, backend)

    def drive(self, server: Server, tokens: list[str]) -> list[Rounds]:
        """One thread per user, for BENCH_DURATION seconds: write, read (timed), read (timed)."""
        deadline = time.monotonic() + self.config.duration
        results = [Rounds() for _ in tokens]
        failures: list[BaseException] = []

        def user(index: int) -> None:
            try:
                with httpx.Client(
                    base_url=server.url,
                    headers={"Authorization": f"Bearer {tokens[index]}"},
                    timeout=30,
                ) as http:
                    one_user(http, index, results[index], deadline)
            except BaseException as error:  # the run fails with it, in the main thread
                failures.append(error)

        threads = [threading.Thread(target=user, args=(i,)) for i in range(len(tokens))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        return results

    def report(self, rounds: list[Rounds], backend: str) -> None:
        after = [ms for r in rounds for ms in r.after_write]
        unwritten = [ms for r in rounds for ms in r.unwritten]
        writes = [ms for r in rounds for ms in r.writes_ms]
        behind = sum(r.behind for r in rounds)
        if not after or not unwritten:
            raise RuntimeError("no counted reads: BENCH_DURATION ended within the warm-up rounds")
        p50, p99 = _percentiles(after)
        base50, base99 = _percentiles(unwritten)
        slow = sum(1 for ms in after if ms > base99)
        ratio = p50 / base50
        self.bench.report.add(
            Figure(
                scenario="GET /me/activity just after one's own write",
                backend=backend,
                value=p50,
                unit="ms p50",
                p50_ms=p50,
                p99_ms=p99,
                limit_name="same read, nothing written before (p50 ms)",
                limit=base50,
                ratio=ratio,
                note=(
                    f"no target; {len(after)} reads by {len(rounds)} users, each just after a "
                    f"PUT /api/users/me (p50 {_percentiles(writes)[0]:.1f} ms) and showing it; "
                    f"without a write before: p50 {base50:.1f} ms, p99 {base99:.1f} ms; "
                    f"p99 ratio {p99 / base99:.2f}; {slow / len(after):.0%} slower than the "
                    f"unwritten read's p99 (those that waited, about); "
                    f"{behind} ({behind / len(after):.1%}) answered Read-Behind > 0 (timed out)"
                ),
            )
        )


def one_user(http: httpx.Client, index: int, rounds: Rounds, deadline: float) -> None:
    last_position = 0
    round_number = 0
    while time.monotonic() < deadline or round_number < WARM_ROUNDS:
        round_number += 1
        counted = round_number > WARM_ROUNDS
        name = f"bench {index} round {round_number} {random.getrandbits(32):x}"
        began = time.perf_counter()
        answer = http.put("/api/users/me", json={"display_name": name})
        wrote = time.perf_counter()
        _expect(answer, 200)
        answer = http.get(ACTIVITY)
        read = time.perf_counter()
        last_position = _shows_write(answer, last_position)
        behind = int(answer.headers[READ_BEHIND])
        if counted:
            rounds.writes_ms.append((wrote - began) * 1000)
            rounds.after_write.append((read - wrote) * 1000)
            rounds.behind += behind > 0
        # The same read with nothing written since: the projection is where this caller's last
        # write left it, so the read answers at once.
        began = time.perf_counter()
        answer = http.get(ACTIVITY)
        read = time.perf_counter()
        _expect(answer, 200)
        if answer.headers[READ_BEHIND] != "0" or answer.json()["entries"][0]["type"] != (
            "ProfileUpdated"
        ):
            raise AssertionError(f"the unwritten read lost the write: {answer.text[:300]}")
        if counted:
            rounds.unwritten.append((read - began) * 1000)


def _shows_write(answer: httpx.Response, last_position: int) -> int:
    """The read after a write must show it: caught up, the newest entry a later ProfileUpdated
    (unless the wait timed out, which is counted; the entry is then checked no further)."""
    _expect(answer, 200)
    if answer.headers[READ_BEHIND] != "0":
        return last_position
    entry = answer.json()["entries"][0]
    if entry["type"] != "ProfileUpdated" or entry["position"] <= last_position:
        raise AssertionError(f"Read-Behind 0 but the write is not shown: {entry}")
    position: int = entry["position"]
    return position


def _expect(answer: httpx.Response, status: int) -> None:
    if answer.status_code != status:
        raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text[:300]}")


def sign_in(server: Server, users: int) -> list[str]:
    """Real logins (one argon2 verification each) of the seeded users: their access tokens."""
    tokens = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for n in range(users):
            answer = http.post("/api/auth/login", json={"login": username(n), "password": PASSWORD})
            _expect(answer, 200)
            tokens.append(answer.json()["access_token"])
    return tokens


def _percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100)
    return statistics.median(values), cuts[98]


def main() -> int:
    """`python -m bench.own_writes`: this scenario alone (BENCH_SQLITE=0 skips the embedded
    default)."""
    from bench.config import load_config
    from bench.run import Bench  # the scenario's host; imported here, bench.run imports us

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    bench = Bench(load_config(), work)
    OwnWritesBench(bench).run()
    print()
    print(bench.report.table())
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
