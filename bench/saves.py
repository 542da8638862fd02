"""Saves per second through the application layer: many concurrent saves of independent new
aggregates (an `EmailClaim` each, one event), from BENCH_SAVE_PROCESSES processes of
BENCH_SAVE_THREADS threads, on a PostgreSQL cluster with production durability.

Each event store's recorder is measured on a fresh database of the same cluster, in the same
run: the library's (the table lock held across the client's round trips), the same lock held
only inside the server (`LockedInServerRecorder`), and the one tessera uses
(`ConcurrentRecorder`), the last also without the pool's pre-ping. `python -m bench.saves`
runs this alone, then the refresh scenario against `tessera serve` on the same cluster.
"""

from __future__ import annotations

import multiprocessing
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

from application.event_log import EventLog
from bench.report import Figure
from domain.account import EmailClaim
from infrastructure.persistence import Database

if TYPE_CHECKING:
    from bench.run import Bench

SAVES_TARGET = 2000.0  # saves/s on the bench machine (2 cores)
LIBRARY = "eventsourcing.postgres:PostgresApplicationRecorder"
LOCKED_IN_SERVER = "infrastructure.event_store:LockedInServerRecorder"
CONCURRENT = "infrastructure.event_store:ConcurrentRecorder"


@dataclass(frozen=True)
class Variant:
    name: str
    topic: str
    pre_ping: bool = True


VARIANTS = (
    Variant("library recorder (LOCK TABLE across round trips)", LIBRARY),
    Variant("table lock inside one server call", LOCKED_IN_SERVER),
    Variant("ConcurrentRecorder (tessera's)", CONCURRENT),
    Variant("ConcurrentRecorder, no pre-ping", CONCURRENT, pre_ping=False),
)


def _event_log(url: str, variant: Variant) -> EventLog:
    database = Database(url=url, sqlite_path=Path(tempfile.gettempdir()) / "unused")
    env = database.eventsourcing_env()
    env["APPLICATION_RECORDER_TOPIC"] = variant.topic
    env["POSTGRES_PRE_PING"] = "y" if variant.pre_ping else "n"
    with database.schema_lock():  # as `tessera serve` makes its tables: one process at a time
        return EventLog(env=env)


def _save_loop(url: str, variant: Variant, threads: int, start_at: float, seconds: float) -> int:
    """One process: `threads` threads saving new aggregates from start_at for `seconds`."""
    log = _event_log(url, variant)
    now = datetime.now(UTC)

    def claim() -> EmailClaim:
        return EmailClaim(email=f"{uuid4().hex}@bench.test", account_id=uuid4(), timestamp=now)

    log.save(claim())  # warm: connection, prepared statements
    counts = [0] * threads
    end = start_at + seconds

    def run(i: int) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        while True:
            log.save(claim())
            if time.time() > end:
                return
            counts[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    log.close()
    return sum(counts)


def saves_per_second(
    url: str, variant: Variant, processes: int, threads: int, seconds: float
) -> float:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 5.0  # after every process has imported and connected
    with context.Pool(processes) as pool:
        counts = pool.starmap(_save_loop, [(url, variant, threads, start_at, seconds)] * processes)
    return sum(counts) / seconds


def saves_figures(bench: Bench, new_database: Callable[[], str]) -> None:
    """One figure per recorder; each is divided by the library recorder's, measured just before."""
    c = bench.config
    backend = f"PostgreSQL (fsync on), {c.save_processes}x{c.save_threads} savers"
    print("== saves/s through the application layer, per event store recorder", flush=True)
    library: float | None = None
    for variant in VARIANTS:
        rate = saves_per_second(
            new_database(), variant, c.save_processes, c.save_threads, c.duration
        )
        library = rate if variant.topic == LIBRARY else library
        met = rate >= SAVES_TARGET if variant.topic == CONCURRENT and variant.pre_ping else None
        bench.report.add(
            Figure(
                scenario=f"saves: {variant.name}",
                backend=backend,
                value=rate,
                unit="save/s",
                limit_name="library recorder save/s",
                limit=library,
                ratio=rate / library if library else None,
                target=f">= {SAVES_TARGET:,.0f}/s" if met is not None else "",
                met=met,
                note="one new aggregate (one event) a save; the library's figure from just before",
            )
        )


def main() -> int:
    from bench.config import load_config
    from bench.run import Bench
    from tests.servers import postgres_cluster

    config = load_config()
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-saves-"))
    bench = Bench(config, work)
    with postgres_cluster(durable=True) as cluster:
        saves_figures(bench, cluster.new_database)
    if config.refresh:
        bench.refresh_only()
    print()
    print(bench.report.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
