"""The read side's figures, on PostgreSQL: audit export speed and peak memory at growing event
counts, each projection's rebuild time, and projection lag while logins run at full speed.

The limit beside export and rebuild is the event store's own read speed, measured in the same
run: the notification log read in the same batches, without decoding anything. No export or
rebuild can read the store faster than that.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.report import Figure
from bench.seed import seed_accounts
from bench.service import serve, service_env
from interfaces.container import build
from interfaces.settings import load_settings
from tests.servers import postgres_cluster, start_redis

if TYPE_CHECKING:
    from bench.run import Bench

EXPORT_TARGET = 50_000.0  # events/s
READ_SPEED_SHARE = 0.5  # rebuilds and the export: at least this share of the store's read speed
LAG_TARGET_SECONDS = 0.1  # p99, issue #11
MEMORY_FLAT = 1.5  # peak RSS at the largest count within this multiple of the smallest's
NOTIFICATIONS_PER_ACCOUNT = 5  # Registered, verification requested, verified, two claims
TESSERA = str(Path(sys.executable).parent / "tessera")
REBUILT = re.compile(r"rebuilt \S+: (\d+) events in ([\d.]+)s")


def store_read_rate(env: dict[str, str]) -> float:
    """Events per second the notification log yields, read in batches of 500 and not decoded."""
    container = build(load_settings(env))
    try:
        recorder = container.log.recorder
        started, position, read = time.perf_counter(), 0, 0
        while True:
            batch = recorder.select_notifications(start=position + 1, limit=500)
            if not batch:
                break
            position = batch[-1].id
            read += len(batch)
        return read / (time.perf_counter() - started)
    finally:
        container.close()


def export_run(env: dict[str, str], work: Path) -> tuple[float, int, int]:
    """`tessera audit export --output FILE` as a process: seconds, peak RSS (KiB), lines."""
    out = work / "trail.jsonl"
    command = [TESSERA, "audit", "export", "--format", "jsonl", "--output", str(out)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"audit export failed: {process.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
    with out.open("rb") as lines:
        count = sum(1 for _ in lines)
    out.unlink()
    return seconds, usage.ru_maxrss, count


class ReadSideBench:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.report = bench.report
        self.config = bench.config

    def run(self) -> None:
        counts = sorted(self.config.export_event_counts)
        print(f"== read side on PostgreSQL: export at {counts} events, rebuilds, lag", flush=True)
        with postgres_cluster(durable=True) as cluster:
            env = service_env(self.bench.work / "read-side", cluster.new_database(), None)
            Path(env["DATA_DIR"]).mkdir(parents=True)
            self.lag_under_login_load(cluster)
            container = build(load_settings(env))
            accounts = 0
            memory: dict[int, int] = {}
            try:
                for index, count in enumerate(counts):
                    target = count // NOTIFICATIONS_PER_ACCOUNT
                    seed_accounts(container, accounts, target, self.bench.password_hash)
                    accounts = target
                    events = container.log.recorder.max_notification_id() or 0
                    memory[events] = self.export(env, events)
                    if index == 0:
                        self.rebuilds(env, events)
            finally:
                container.close()
            self.memory_figure(memory)

    def export(self, env: dict[str, str], events: int) -> int:
        before = store_read_rate(env)
        seconds, rss_kib, lines = export_run(env, self.bench.work)
        after = store_read_rate(env)
        limit = (before + after) / 2
        rate = events / seconds
        self.report.add(
            Figure(
                scenario=f"audit export ({events:,} events)",
                backend="PostgreSQL",
                value=rate,
                unit="event/s",
                limit_name="store read event/s",
                limit=limit,
                ratio=rate / limit,
                target=f">= {EXPORT_TARGET:,.0f} event/s and >= {READ_SPEED_SHARE} x store read",
                met=rate >= EXPORT_TARGET and rate / limit >= READ_SPEED_SHARE,
                note=f"{lines:,} trail lines in {seconds:.1f} s, peak RSS {rss_kib / 1024:.0f} MiB; "
                f"store read {before:,.0f} before, {after:,.0f} after",
            )
        )
        return rss_kib

    def memory_figure(self, memory: dict[int, int]) -> None:
        smallest, largest = min(memory), max(memory)
        ratio = memory[largest] / memory[smallest]
        self.report.add(
            Figure(
                scenario=f"audit export peak RSS, {largest:,} vs {smallest:,} events",
                backend="PostgreSQL",
                value=memory[largest] / 1024,
                unit="MiB",
                limit_name=f"MiB at {smallest:,}",
                limit=memory[smallest] / 1024,
                ratio=ratio,
                target=f"<= {MEMORY_FLAT} (flat)",
                met=ratio <= MEMORY_FLAT,
            )
        )

    def rebuilds(self, env: dict[str, str], events: int) -> None:
        for name in ("accounts", "sessions", "audit_log"):
            limit = store_read_rate(env)
            answer = subprocess.run(
                [TESSERA, "projector", "rebuild", name],
                env=env,
                capture_output=True,
                text=True,
                timeout=3600,
                check=True,
            )
            found = REBUILT.search(answer.stdout)
            if found is None:
                raise RuntimeError(f"rebuild {name}: {answer.stdout} {answer.stderr[-500:]}")
            seconds = float(found.group(2))
            rate = int(found.group(1)) / max(seconds, 1e-6)
            self.report.add(
                Figure(
                    scenario=f"rebuild {name} ({events:,} events)",
                    backend="PostgreSQL",
                    value=rate,
                    unit="event/s",
                    limit_name="store read event/s",
                    limit=limit,
                    ratio=rate / limit,
                    target=f">= {READ_SPEED_SHARE} x store read",
                    met=rate / limit >= READ_SPEED_SHARE,
                    note=f"{seconds:.2f} s (`tessera projector rebuild {name}`)",
                )
            )

    def lag_under_login_load(self, cluster: object) -> None:
        """`tessera serve` and `tessera projector` on PostgreSQL and Redis, logins at full
        speed; the lag of every projection sampled five times a second meanwhile."""
        redis = start_redis()
        try:
            env = service_env(
                self.bench.work / "lag",
                cluster.new_database(),  # type: ignore[attr-defined]
                redis.url,
            )
            Path(env["DATA_DIR"]).mkdir(parents=True)
            settings = load_settings(env)
            accounts = self.config.accounts_small
            self.bench.seed(settings, 0, accounts, "PG+Redis (lag)")
            log = (self.bench.work / "lag-projector.log").open("ab")
            projector = subprocess.Popen([TESSERA, "projector"], env=env, stdout=log, stderr=log)
            samples: list[float] = []
            worst: dict[str, float] = {}
            stop = threading.Event()
            watcher = build(settings)

            def sample() -> None:
                while not stop.is_set():
                    lags = watcher.projection_lag()
                    samples.append(max(lag.seconds for lag in lags.values()))
                    for name, lag in lags.items():
                        worst[name] = max(worst.get(name, 0.0), lag.seconds)
                    stop.wait(0.2)

            try:
                # The seeded accounts first: the figure is the lag the logins cause, not the
                # backlog of a projector that has just started.
                deadline = time.monotonic() + 600
                while any(lag.events for lag in watcher.projection_lag().values()):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the projector never caught up with the seeding")
                    time.sleep(0.5)
                with serve(
                    env, self.config.server_workers, self.bench.work / "lag-serve.log"
                ) as server:
                    self.bench.warm(server)
                    thread = threading.Thread(target=sample, daemon=True)
                    thread.start()
                    result = self.bench.login(server, accounts)
                    stop.set()
                    thread.join()
            finally:
                stop.set()
                watcher.close()
                projector.terminate()
                projector.wait(timeout=20)
            p99 = statistics.quantiles(samples, n=100)[98] if len(samples) >= 2 else samples[0]
            self.report.add(
                Figure(
                    scenario="projection lag p99 under full login load",
                    backend=f"PG+Redis, {self.config.server_workers} workers + 1 projector",
                    value=p99,
                    unit="s",
                    limit_name="target s",
                    limit=LAG_TARGET_SECONDS,
                    ratio=p99 / LAG_TARGET_SECONDS,
                    target=f"< {LAG_TARGET_SECONDS} s",
                    met=p99 < LAG_TARGET_SECONDS,
                    note=f"{len(samples)} samples of the largest lag of 4 projections; "
                    f"{result.rate(200):.1f} login/s meanwhile; worst by projection: "
                    + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in worst.items()),
                )
            )
        finally:
            redis.stop()
