"""The benchmark's knobs, from BENCH_* environment variables (defaults keep `make bench` under
about ten minutes on two cores)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class BenchConfig:
    duration: int = 10  # seconds of load per scenario
    threads: int = 2  # wrk threads for the throughput scenarios
    connections: int = 32  # for the cheap endpoints (/me, refresh, the bare endpoint)
    login_connections: int = 8  # logins and registrations: enough to keep every hash slot busy
    workers: int = 0  # `tessera serve --workers` on PostgreSQL (0: one per core)
    accounts_small: int = 1_000
    accounts_large: int = 100_000
    sessions: int = 64  # logins made beforehand, for the /me and refresh scenarios' tokens
    hash_seconds: int = 5  # length of each measurement of the argon2 bound
    flood_factor: float = 4.0  # the flood offers this many times the hash bound
    flood_connections: int = 48
    probe_connections: int = 4  # /me alongside the flood: a latency probe, not a load
    sqlite: bool = True  # also run the embedded default's scenario
    granian: bool = True  # also serve the same app under granian, to compare with uvicorn
    peer: bool = True  # also measure a conventional CRUD auth service (bench/peer.py)
    export_events: str = "100000,1000000"  # event counts at which the audit export is measured
    read_side: bool = True  # also run the read side's scenarios (export, rebuilds, lag)
    saves: bool = True  # also measure saves/s per event store recorder (bench/saves.py)
    save_processes: int = 2  # processes saving in the saves scenario
    save_threads: int = 16  # threads saving in each of them
    refresh: bool = True  # `python -m bench.saves`: also the refresh scenario
    own_writes: bool = True  # also time reads of one's own writes (bench/own_writes.py)
    own_writes_users: int = 4  # signed-in users, one thread each, in that scenario
    sealing: bool = True  # also measure login and /me with sealing off (bench/sealing.py)
    sealing_postgres: bool = True  # that comparison on PostgreSQL + Redis too, not only SQLite
    erasure: bool = True  # also time the erasure of long-lived accounts (bench/erasure.py)
    erasure_accounts: int = 3  # accounts erased, one after the other, in that scenario
    erasure_events: int = 1_000  # events of each of them
    op_duration: int = 6  # seconds of each run of the OpenID Provider's figures (machine_tokens)
    # Authorization codes made ahead for the code exchange (each once): more than its run spends,
    # as wrk's rate is over the whole run, also when the codes ran out before its end.
    op_codes: int = 4_000
    hash_fairness: bool = True  # also time a login while another account floods the hash gate
    fairness_loops: int = 16  # the flooding account's login loops (bench/hash_fairness.py)
    webhooks: bool = True  # also measure webhook deliveries and their lag (bench/webhooks.py)
    webhook_events: int = 10_000  # the backlog whose delivery rate is measured
    # The lag's offered rate, updates/s; 0: half the delivery rate just measured. Fixed, it
    # compares code whose delivery rates differ at one load.
    webhook_lag_rate: int = 0

    @property
    def export_event_counts(self) -> list[int]:
        return [int(part) for part in self.export_events.split(",") if part.strip()]

    @property
    def cores(self) -> int:
        return os.cpu_count() or 1

    @property
    def server_workers(self) -> int:
        return self.workers or self.cores


def load_config(environ: dict[str, str] | None = None) -> BenchConfig:
    values = os.environ if environ is None else environ
    given: dict[str, object] = {}
    for spec in fields(BenchConfig):
        raw = values.get(f"BENCH_{spec.name.upper()}")
        if raw is None or raw == "":
            continue
        if spec.type == "bool":
            given[spec.name] = raw.lower() in {"1", "true", "yes", "on"}
        elif spec.type == "float":
            given[spec.name] = float(raw)
        elif spec.type == "str":
            given[spec.name] = raw
        else:
            given[spec.name] = int(raw)
    return BenchConfig(**given)  # type: ignore[arg-type]
