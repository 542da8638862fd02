"""Webhook deliveries to a local receiver, with durability on: PostgreSQL (fsync and synchronous
commit on) and Redis, `tessera serve`, `tessera projector` and `tessera worker` as processes.

The receiver (tests/webhooks/receiver.py, a process of its own) is measured first under wrk,
posting webhook-shaped requests: the limit. Then:

- throughput: BENCH_WEBHOOK_EVENTS profile updates are written (as accounts' own commands, in
  atomic saves) while the projector is stopped; the projector starts, and deliveries per second
  are counted at the receiver from its first delivery to its last, as a ratio to the receiver's
  own rate (goal >= 0.2);
- lag: profile updates at half the delivery rate just measured, each its own commit, for
  BENCH_DURATION seconds; the lag of each is from its event's time (the commit) to its arrival
  at the receiver (goal: p99 < 1 s).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from application.origin import current_client
from application.views import Client
from bench.report import Figure
from bench.seed import PASSWORD, seed_accounts, username
from bench.service import serve, service_env
from domain.account import Account
from interfaces.container import Container, build
from interfaces.settings import load_settings
from tests.servers import free_port, postgres_cluster, start_redis, wait_for_port

if TYPE_CHECKING:
    from bench.run import Bench

RATIO_TARGET = 0.2  # deliveries/s over the receiver's own req/s under wrk
LAG_P99_TARGET_MS = 1000.0
TESSERA = str(Path(sys.executable).parent / "tessera")
_ACCOUNTS = 200  # whose profile updates make the events (each account's in order)
_SAVE = 500  # events per atomic save while the backlog is written


class ReceiverProcess:
    """tests/webhooks/receiver.py as a process: its own interpreter, so neither the bench's
    threads nor its GIL slow the receiver down."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.webhooks.receiver", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parent.parent,
            )
        wait_for_port(self.port)
        self.seen = 0  # arrivals before the current measurement

    def records(self) -> list[list[Any]]:
        """[arrived, status, webhook-id, body timestamp] of each arrival since the mark."""
        answer = httpx.get(f"http://127.0.0.1:{self.port}/records?since={self.seen}", timeout=60)
        rows: list[list[Any]] = answer.json()
        return rows

    def mark(self) -> None:
        self.seen += len(self.records())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


class WebhookBench:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config

    def run(self) -> None:
        backend = f"PG+Redis, {self.config.server_workers} workers + projector + worker"
        print(f"== webhook deliveries: {backend}", flush=True)
        work = self.bench.work / "webhooks"
        work.mkdir(parents=True)
        with postgres_cluster(durable=True) as cluster:
            redis = start_redis()
            receiver = ReceiverProcess(work / "receiver.log")
            try:
                env = service_env(work / "var", cluster.new_database(), redis.url)
                env["WEBHOOK_ALLOW_HTTP_LOOPBACK"] = "true"
                self.measure(env, receiver, backend)
            finally:
                receiver.stop()
                redis.stop()

    def receiver_rate(self, receiver: ReceiverProcess) -> float:
        result = self.bench.wrk("webhook.lua", receiver.url, self.config.connections).run()
        if result.rate(200) < result.rate():
            raise RuntimeError(f"the receiver failed: {result.statuses} {result.errors}")
        receiver.mark()
        return result.rate(200)

    def measure(self, env: dict[str, str], receiver: ReceiverProcess, backend: str) -> None:
        work = Path(env["DATA_DIR"])
        work.mkdir(parents=True)
        limit_before = self.receiver_rate(receiver)
        container = build(load_settings(env))
        processes: dict[str, subprocess.Popen[bytes]] = {}

        def start(name: str) -> None:
            with (work / f"{name}.log").open("ab") as log:
                processes[name] = subprocess.Popen(
                    [TESSERA, name], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT
                )

        def stop(name: str) -> None:
            process = processes.pop(name)
            process.terminate()
            process.wait(timeout=30)

        try:
            seed_accounts(container, 0, _ACCOUNTS + 1, self.bench.password_hash)
            admin = username(_ACCOUNTS)
            granted = subprocess.run(
                [TESSERA, "admin", "grant-role", admin, "admin"],
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if granted.returncode != 0:
                raise RuntimeError(f"grant-role: {granted.stdout} {granted.stderr}")
            accounts = [container.log.account_named(username(n)) for n in range(_ACCOUNTS)]
            start("projector")
            start("worker")
            with serve(env, self.config.server_workers, work / "server.log") as server:
                self.endpoint(server.url, admin, receiver.url)
                stop("projector")
                events = self.config.webhook_events
                write_backlog(container, [a for a in accounts if a is not None], events)
                start("projector")
                rows = wait_for(receiver, events, timeout=max(120.0, events / 20))
                rate = per_second(rows)
                limit_after = self.receiver_rate(receiver)
                limit = (limit_before + limit_after) / 2
                self.throughput_figure(rows, rate, limit, (limit_before, limit_after), backend)

                half = self.config.webhook_lag_rate or rate / 2
                sent, took = write_paced(
                    container, [a for a in accounts if a is not None], half, self.config.duration
                )
                rows = wait_for(receiver, sent, timeout=60.0)
                self.lag_figure(rows, half, sent / took, backend, stages(container, rows))
        finally:
            for name in list(processes):
                stop(name)
            container.close()

    def endpoint(self, base: str, admin: str, url: str) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            login = http.post("/api/auth/login", json={"login": admin, "password": PASSWORD})
            login.raise_for_status()
            made = http.post(
                "/api/admin/webhooks",
                json={"url": url, "events": ["account.profile_updated"]},
                headers={"Authorization": f"Bearer {login.json()['access_token']}"},
            )
            if made.status_code != 201:
                raise RuntimeError(f"the endpoint: {made.status_code} {made.text}")

    def throughput_figure(
        self,
        rows: list[list[Any]],
        rate: float,
        limit: float,
        around: tuple[float, float],
        backend: str,
    ) -> None:
        ratio = rate / limit
        refused = sum(1 for r in rows if r[1] != 200)
        self.bench.report.add(
            Figure(
                scenario=f"webhook deliveries ({len(rows):,} events queued)",
                backend=backend,
                value=rate,
                unit="delivery/s",
                limit_name="the receiver's own req/s under wrk",
                limit=limit,
                ratio=ratio,
                target=f">= {RATIO_TARGET}",
                met=ratio >= RATIO_TARGET,
                note=(
                    f"first to last arrival; receiver {around[0]:,.0f} req/s before, "
                    f"{around[1]:,.0f} after; {refused} non-200 arrivals"
                ),
            )
        )

    def lag_figure(
        self, rows: list[list[Any]], offered: float, written: float, backend: str, stages: str
    ) -> None:
        pace = "fixed" if self.config.webhook_lag_rate else "half the delivery rate"
        lags = [
            (arrived - datetime.fromisoformat(stamp).timestamp()) * 1000
            for arrived, status, _, stamp in rows
            if status == 200 and stamp
        ]
        p50, p99 = percentiles(lags)
        self.bench.report.add(
            Figure(
                scenario="webhook lag, commit to delivery",
                backend=backend,
                value=p50,
                unit="ms p50",
                p50_ms=p50,
                p99_ms=p99,
                limit_name="target p99 ms",
                limit=LAG_P99_TARGET_MS,
                ratio=p99 / LAG_P99_TARGET_MS,
                target=f"p99 < {LAG_P99_TARGET_MS:.0f} ms",
                met=p99 < LAG_P99_TARGET_MS,
                note=(
                    f"{len(rows):,} profile updates offered at {offered:,.0f}/s ({pace}), "
                    f"written at {written:,.0f}/s, each its own commit; "
                    f"max {max(lags):,.0f} ms; {stages}"
                ),
            )
        )


def write_backlog(container: Container, accounts: list[Account], events: int) -> None:
    """`events` profile updates, the accounts' in turn, in atomic saves of _SAVE."""
    token = current_client.set(Client(ip="203.0.113.9", user_agent="bench/webhooks"))
    try:
        batch: dict[Any, Account] = {}
        for n in range(events):
            account = accounts[n % len(accounts)]
            account.update_profile(f"Backlog {n}", container.clock.now())
            batch[account.id] = account
            if len(batch) == len(accounts) or (n + 1) % _SAVE == 0 or n + 1 == events:
                container.log.save(*batch.values())
                batch = {}
    finally:
        current_client.reset(token)


def write_paced(
    container: Container, accounts: list[Account], rate: float, seconds: int
) -> tuple[int, float]:
    """Profile updates at `rate` per second for `seconds`, each saved (committed) on its own, by
    a few threads (each with accounts of its own); how many were written, and in how long (more
    than `seconds` where the writers could not keep the pace)."""
    threads = 4
    started = time.monotonic()
    total = int(rate * seconds)
    counter = iter(range(total))
    lock = threading.Lock()
    failures: list[BaseException] = []

    def writer(index: int) -> None:
        token = current_client.set(Client(ip="203.0.113.9", user_agent="bench/webhooks"))
        mine = accounts[index::threads]
        try:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                due = started + n / rate
                time.sleep(max(0.0, due - time.monotonic()))
                account = mine[n % len(mine)]
                account.update_profile(f"Paced {n}", container.clock.now())
                container.log.save(account)
        except BaseException as error:
            failures.append(error)
        finally:
            current_client.reset(token)

    pool = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if failures:
        raise failures[0]
    return total, time.monotonic() - started


def stages(container: Container, rows: list[list[Any]]) -> str:
    """Where the lag goes, p50/p99 of each stage: commit to the feed's record of the delivery
    (the projector), and that record to the arrival (the broker, the courier, the post)."""
    recorded: dict[str, float] = {}
    ledger: Any = container.webhook_feed.view
    statement = f"SELECT id, created_at FROM {ledger.table}"  # noqa: S608 - our table's name
    with ledger.datastore.transaction(commit=False) as c:
        c.execute(statement)
        for row in c.fetchall():
            recorded[str(row["id"])] = float(row["created_at"])
    fed, carried = [], []
    for arrived, status, webhook_id, stamp in rows:
        if status != 200 or not stamp or webhook_id not in recorded:
            continue
        fed.append((recorded[webhook_id] - datetime.fromisoformat(stamp).timestamp()) * 1000)
        carried.append((arrived - recorded[webhook_id]) * 1000)
    (fed50, fed99), (carried50, carried99) = percentiles(fed), percentiles(carried)
    return (
        f"commit to recorded {fed50:,.0f}/{fed99:,.0f} ms, "
        f"recorded to arrival {carried50:,.0f}/{carried99:,.0f} ms (p50/p99)"
    )


def wait_for(receiver: ReceiverProcess, count: int, timeout: float) -> list[list[Any]]:
    """The first `count` accepted arrivals since the mark; the mark moves past them."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in receiver.records() if r[1] == 200]
        if len(rows) >= count:
            receiver.mark()
            return rows[:count]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(rows)} of {count} deliveries in {timeout:.0f} s")
        time.sleep(0.5)


def per_second(rows: list[list[Any]]) -> float:
    arrived = sorted(float(r[0]) for r in rows)
    return (len(arrived) - 1) / (arrived[-1] - arrived[0])


def percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    return statistics.median(values), statistics.quantiles(values, n=100)[98]


def main() -> int:
    """`python -m bench.webhooks`: this scenario alone."""
    from bench.config import load_config
    from bench.run import Bench  # the scenario's host; imported here, bench.run imports us

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    bench = Bench(load_config(), work)
    WebhookBench(bench).run()
    print()
    print(bench.report.table())
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
