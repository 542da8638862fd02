"""Saves per second through the application layer: many concurrent saves of independent new
aggregates (an `EmailClaim` each, one event), from BENCH_SAVE_PROCESSES processes of
BENCH_SAVE_THREADS threads, on a PostgreSQL cluster with production durability.

Each event store's recorder is measured on a fresh database of the same cluster, in the same
run: the library's (the table lock held across the client's round trips), the same lock held
only inside the server (`LockedInServerRecorder`), and the one tessera uses
(`ConcurrentRecorder`), the last with the library's pre-ping on every checkout and as tessera
runs it (`fail_fast` pings only connections idle for a second). `python -m bench.saves`
runs this alone, then the refresh scenario against `tessera serve` on the same cluster.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

import psycopg

from application.persistence.event_log import EventLog
from bench.report import Figure
from domain.account import EmailClaim
from infrastructure.data_keys import WrappedDataKeys
from infrastructure.keyring import Keyring
from infrastructure.persistence import Database, fail_fast

if TYPE_CHECKING:
    from bench.run import Bench
    from tests.servers import PostgresCluster

SAVES_TARGET = 2000.0  # saves/s on the bench machine (2 cores)
LIBRARY = "eventsourcing.postgres:PostgresApplicationRecorder"
LOCKED_IN_SERVER = "infrastructure.event_store:LockedInServerRecorder"
CONCURRENT = "infrastructure.event_store:ConcurrentRecorder"


@dataclass(frozen=True)
class Variant:
    name: str
    topic: str
    pre_ping: bool = True


BARE = "bare"  # no application layer: one-row autocommit INSERTs over psycopg, the ceiling
VARIANTS = (
    Variant("bare commits: one-row autocommit INSERT, no application layer", BARE),
    Variant("library recorder (LOCK TABLE across round trips)", LIBRARY),
    Variant("table lock inside one server call", LOCKED_IN_SERVER),
    Variant("ConcurrentRecorder, pre-ping on every checkout", CONCURRENT),
    Variant("ConcurrentRecorder as tessera runs it (ping after 1 s idle)", CONCURRENT, False),
)


def _event_log(url: str, variant: Variant) -> EventLog:
    database = Database(url=url, sqlite_path=Path(tempfile.gettempdir()) / "unused")
    env = database.eventsourcing_env()
    env["APPLICATION_RECORDER_TOPIC"] = variant.topic
    env["POSTGRES_PRE_PING"] = "y" if variant.pre_ping else "n"
    with database.schema_lock():  # as `tessera serve` makes its tables: one process at a time
        # Claims carry no personal values: nothing is sealed, no key table is ever asked.
        log = EventLog(WrappedDataKeys(Keyring(secrets.token_bytes(32))), env=env)
    if not variant.pre_ping:
        fail_fast(log.recorder, log.outage)  # as the container does: it pings idle connections
    return log


def _timed(threads: int, start_at: float, seconds: float, action: Callable[[int], object]) -> Run:
    """`threads` threads doing `action` from start_at for `seconds`: how many they finished, and
    the CPU time this process spent meanwhile (all its threads)."""
    counts = [0] * threads
    end = start_at + seconds

    def run(i: int) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        while True:
            action(i)
            if time.time() > end:
                return
            counts[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu = time.process_time()
    time.sleep(max(0.0, end - time.time()))
    cpu = time.process_time() - cpu
    for worker in workers:
        worker.join()
    return Run(sum(counts), cpu)


def _save_loop(url: str, variant: Variant, threads: int, start_at: float, seconds: float) -> Run:
    """One process: `threads` threads saving new aggregates from start_at for `seconds`; or,
    for the bare variant, committing one-row INSERTs each on a connection of its own (what the
    database, its disk and the client library allow before any application code)."""
    if variant.topic == BARE:
        connections = [psycopg.connect(url, autocommit=True) for _ in range(threads)]
        run = _timed(
            threads,
            start_at,
            seconds,
            lambda i: connections[i].execute(
                "INSERT INTO bare_commits DEFAULT VALUES", prepare=True
            ),
        )
        for connection in connections:
            connection.close()
        return run
    log = _event_log(url, variant)
    now = datetime.now(UTC)

    def claim() -> EmailClaim:
        return EmailClaim(id=EmailClaim.id_for(uuid4().hex), account_id=uuid4(), timestamp=now)

    log.save(claim())  # warm: connection, prepared statements
    run = _timed(threads, start_at, seconds, lambda _: log.save(claim()))
    log.close()
    return run


@dataclass(frozen=True)
class Run:
    saves: int
    cpu_seconds: float


@dataclass(frozen=True)
class Measured:
    rate: float  # saves/s
    client_cpu_ms: float  # per save, the saving processes
    server_cpu_ms: float  # per save, every PostgreSQL process


def server_cpu_seconds(cluster: PostgresCluster) -> float:
    """CPU time of the cluster's postmaster and its children (backends, WAL writer...)."""
    pid = int((cluster.directory / "data" / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    ticks = 0
    for process in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(
    cluster: PostgresCluster, variant: Variant, processes: int, threads: int, seconds: float
) -> Measured:
    url = cluster.new_database()
    if variant.topic == BARE:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bare_commits (id bigserial PRIMARY KEY)")
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 5.0  # after every process has imported and connected
    with context.Pool(processes) as pool:
        pending = pool.starmap_async(
            _save_loop, [(url, variant, threads, start_at, seconds)] * processes
        )
        time.sleep(max(0.0, start_at - time.time()))
        server = server_cpu_seconds(cluster)
        time.sleep(max(0.0, start_at + seconds - time.time()))
        server = server_cpu_seconds(cluster) - server
        runs = pending.get()
    saves = sum(r.saves for r in runs) or 1
    return Measured(
        rate=saves / seconds,
        client_cpu_ms=1000 * sum(r.cpu_seconds for r in runs) / saves,
        server_cpu_ms=1000 * server / saves,
    )


def saves_figures(bench: Bench, cluster: PostgresCluster) -> None:
    """One figure per recorder; each is divided by the library recorder's, measured just before.
    Each note says where the CPU went: milliseconds per save in the saving processes and in
    PostgreSQL, and so the rate the machine's cores would allow were nothing else waiting."""
    c = bench.config
    backend = f"PostgreSQL (fsync on), {c.save_processes}x{c.save_threads} savers"
    print("== saves/s through the application layer, per event store recorder", flush=True)
    library: float | None = None
    bare: float | None = None
    for variant in VARIANTS:
        m = measure(cluster, variant, c.save_processes, c.save_threads, c.duration)
        rate = m.rate
        library = rate if variant.topic == LIBRARY else library
        bare = rate if variant.topic == BARE else bare
        met = rate >= SAVES_TARGET if variant.topic == CONCURRENT and not variant.pre_ping else None
        cpu_bound = 1000 * c.cores / (m.client_cpu_ms + m.server_cpu_ms)
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
                note=_join(
                    "one new aggregate (one event) a save",
                    f"{rate / bare:.2f} of the bare commits' {bare:,.0f}/s" if bare else "",
                    f"CPU per save: {m.client_cpu_ms:.2f} ms client, "
                    f"{m.server_cpu_ms:.2f} ms PostgreSQL; {c.cores} cores allow "
                    f"{cpu_bound:,.0f}/s at that cost",
                ),
                load={"client_cpu_ms": m.client_cpu_ms, "server_cpu_ms": m.server_cpu_ms},
            )
        )


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def main() -> int:
    from bench.config import load_config
    from bench.run import Bench
    from tests.servers import postgres_cluster

    config = load_config()
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-saves-"))
    bench = Bench(config, work)
    with postgres_cluster(durable=True) as cluster:
        saves_figures(bench, cluster)
    if config.refresh:
        bench.refresh_only()
    from bench.run import RESULTS

    path = RESULTS / f"saves-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    bench.report.write(path)
    print()
    print(bench.report.table())
    print(f"\nwritten to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
