"""How long erasing a long-lived account takes: accounts with BENCH_ERASURE_EVENTS events each
(profile updates and failed logins, every one from a client, so each carries sealed values,
with a snapshot every 50), then `container.erasure.erase(...)` timed on a container built
afresh (no aggregate or key cached): the command, which records AccountErased, destroys the
data key and drops the snapshots. Then the time until every projection (read models, mail,
the erasures finisher), each caught up by a thread of its own as `tessera projector` runs
them, has applied it, counted from the start of the command. The target: under 1 s for 1,000
events. On the embedded default (SQLite) and PostgreSQL (durable, as the other figures).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from application.origin import current_client
from application.views import Client
from bench.report import Figure
from bench.seed import seed_accounts, username
from bench.service import service_env
from domain.account import Account
from domain.lockout import LockoutPolicy
from interfaces.container import Container, build
from interfaces.settings import Settings, load_settings
from tests.servers import postgres_cluster

if TYPE_CHECKING:
    from bench.run import Bench

ERASE_TARGET_S = 1.0
_SAVE_EVERY = 10  # events per save while seeding: a snapshot is taken as each 50th is saved
_NEVER_LOCKS = LockoutPolicy(threshold=10**9)


def grow(container: Container, account_id: UUID, events: int) -> None:
    """Adds events to the account until it has `events`, as commands from a client would."""
    token = current_client.set(Client(ip="203.0.113.7", user_agent="bench/erasure"))
    try:
        account = container.log.find(account_id, Account)
        assert account is not None
        while account.version < events:
            for _ in range(min(_SAVE_EVERY, events - account.version)):
                now = container.clock.now()
                if account.version % 2:
                    account.update_profile(f"Name {account.version}", now)
                else:
                    account.fail_login(now, _NEVER_LOCKS)
            container.log.save(account)
    finally:
        current_client.reset(token)


def caught_up(container: Container) -> dict[str, float]:
    """Runs every projection until it has read everything, each in a thread of its own; the
    seconds (perf_counter) at which each finished."""

    def one(index: int) -> tuple[str, float]:
        projector = container.projectors[index]
        projector.catch_up()
        return projector.name, time.perf_counter()

    with ThreadPoolExecutor(len(container.projectors)) as pool:
        return dict(pool.map(one, range(len(container.projectors))))


def drain(container: Container) -> None:
    """Everything before the measurement projected and its mail handed over, so neither the
    seeding's projection nor its mail runs while the erasure is timed."""
    container.mail_broker.start_worker(container.settings.worker_threads)
    caught_up(container)
    container.mail_broker.join(timeout_ms=120_000)


def erasure_seconds(
    settings: Settings, accounts: int, events: int, password_hash: str
) -> list[tuple[float, float, str]]:
    """Seeds `accounts` accounts of `events` events each, then erases them one by one on a fresh
    container: (command seconds, seconds until every projection applied it, the slowest
    projection) per account."""
    container = build(settings)
    try:
        seed_accounts(container, 0, accounts, password_hash)
        for n in range(accounts):
            account = container.log.account_named(username(n))
            assert account is not None
            grow(container, account.id, events)
        drain(container)
    finally:
        container.close()
    container = build(settings)  # nothing cached: the command loads and unwraps from the store
    found = []
    try:
        drain(container)
        for n in range(accounts):
            started = time.perf_counter()
            container.erasure.erase(username(n), "bench")
            command = time.perf_counter() - started
            finished = caught_up(container)
            slowest = max(finished, key=lambda name: finished[name])
            found.append((command, finished[slowest] - started, slowest))
            account = container.log.account_named(username(n))
            assert account is None or account.erased, "the account outlived its erasure"
        container.mail_broker.join(timeout_ms=120_000)
    finally:
        container.close()
    return found


class ErasureBench:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config

    def run(self) -> None:
        if self.config.sqlite:
            print("== erasure of a long-lived account: SQLite", flush=True)
            self.measure(service_env(self.bench.work / "erase-sqlite", None, None), "SQLite")
        print("== erasure of a long-lived account: PostgreSQL", flush=True)
        with postgres_cluster(durable=True) as cluster:
            env = service_env(self.bench.work / "erase-pg", cluster.new_database(), None)
            self.measure(env, "PostgreSQL")

    def measure(self, env: dict[str, str], backend: str) -> None:
        c = self.config
        Path(env["DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        found = erasure_seconds(
            load_settings(env), c.erasure_accounts, c.erasure_events, self.bench.password_hash
        )
        commands = [f[0] for f in found]
        applied = [f[1] for f in found]
        slowest = sorted({f[2] for f in found})
        for what, values, note in (
            (
                "erase (the command)",
                commands,
                "records AccountErased, destroys the key, drops "
                "the snapshots; on a container with nothing cached",
            ),
            (
                "erase until every projection applied it",
                applied,
                "from the command's start "
                f"until the last projection caught up (each in a thread); slowest: {', '.join(slowest)}",
            ),
        ):
            worst = max(values)
            self.bench.report.add(
                Figure(
                    scenario=f"{what} ({c.erasure_events:,} events)",
                    backend=backend,
                    value=statistics.median(values) * 1000,
                    unit="ms (median)",
                    limit_name="target ms",
                    limit=ERASE_TARGET_S * 1000,
                    ratio=worst / ERASE_TARGET_S,
                    target=f"worst < {ERASE_TARGET_S:g} s",
                    met=worst < ERASE_TARGET_S,
                    note=f"{note}; {len(values)} accounts: "
                    + ", ".join(f"{v * 1000:.0f} ms" for v in values),
                )
            )


def main() -> int:
    """`python -m bench.erasure`: this scenario alone (BENCH_SQLITE=0 skips the embedded
    default)."""
    from bench.config import load_config
    from bench.run import Bench  # the scenario's host; imported here, bench.run imports us

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    bench = Bench(load_config(), work)
    ErasureBench(bench).run()
    print()
    print(bench.report.table())
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
