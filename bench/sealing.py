"""What sealing personal values costs: login and GET /api/users/me on the service as it is,
beside the same service with sealing off (bench/plain_keys.py), in the same run. Target:
encryption adds at most 10% (sealed at least 0.90 of unsealed).

Each backend gets two servers side by side, on databases of their own seeded the same way (the
unsealed one through plain keys, so its events hold plain values). They are measured in turns,
sealed, unsealed, unsealed, sealed, each turn bracketed by its limit as the other figures are
(the argon2 bound for login, the bare endpoint for /me), so a drift of the shared machine's
capacity in either direction favours neither; the other server idles meanwhile.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.plain_keys import plain_container
from bench.report import Figure
from bench.seed import drain_mail, seed_accounts
from bench.service import Server, serve, service_env
from interfaces.container import Container, build
from interfaces.settings import Settings, load_settings
from tests.servers import postgres_cluster, start_redis

if TYPE_CHECKING:
    from bench.run import Bench

SEALED_TARGET = 0.90  # of the unsealed figure: encryption adds at most 10%
TURNS = ("sealed", "unsealed", "unsealed", "sealed")
BUILDERS: dict[str, Callable[[Settings], Container]] = {
    "sealed": build,
    "unsealed": plain_container,
}
SERVERS = {"sealed": "uvicorn", "unsealed": "plain"}


@dataclass(frozen=True)
class Turn:
    rate: float  # login/s or req/s answered 200
    limit: float  # the mean of its limit measured just before and just after


class SealingBench:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config

    def run(self) -> None:
        c = self.config
        if c.sqlite:
            print("== sealed vs unsealed: SQLite, tessera serve (one process)", flush=True)
            envs = {
                name: service_env(self.bench.work / f"{name}-sqlite", None, None)
                for name in BUILDERS
            }
            self.measure(envs, 1, "SQLite, 1 process")
        if c.sealing_postgres:
            backend = f"PG+Redis, {c.server_workers} workers"
            print(f"== sealed vs unsealed: {backend}", flush=True)
            with postgres_cluster(durable=True) as cluster, ExitStack() as stack:
                envs = {}
                for name in BUILDERS:
                    redis = start_redis()
                    stack.callback(redis.stop)
                    work = self.bench.work / f"{name}-pg"
                    envs[name] = service_env(work, cluster.new_database(), redis.url)
                self.measure(envs, c.server_workers, backend)

    def measure(self, envs: dict[str, dict[str, str]], workers: int, backend: str) -> None:
        accounts = self.config.accounts_small
        for name, env in envs.items():
            Path(env["DATA_DIR"]).mkdir(parents=True)
            seed(BUILDERS[name], load_settings(env), accounts, self.bench.password_hash)
        with self.servers(envs, workers) as servers:
            access = {}
            for name, server in servers.items():
                self.bench.warm(server)
                access[name] = self.bench.sign_in(server, accounts, f"{name}-{workers}")[0]
            logins = self.turns(
                lambda name: self.bench.bracketed(
                    self.bench.hash_bound, lambda: self.bench.login(servers[name], accounts)
                )
            )
            mes = self.turns(
                lambda name: self.bench.bracketed(
                    lambda: self.bench.bare(servers[name]),
                    lambda: self.bench.me(servers[name], access[name]),
                )
            )
        self.figure(f"login ({accounts:,} accounts)", "login/s", logins, backend, "argon2 bound")
        self.figure(
            f"GET /api/users/me ({accounts:,} accounts)", "req/s", mes, backend, "bare endpoint"
        )

    @contextmanager
    def servers(self, envs: dict[str, dict[str, str]], workers: int) -> Iterator[dict[str, Server]]:
        with ExitStack() as stack:
            yield {
                name: stack.enter_context(
                    serve(
                        env,
                        workers,
                        self.bench.work / f"{name}-{workers}-server.log",
                        server_name=SERVERS[name],
                    )
                )
                for name, env in envs.items()
            }

    def turns(
        self, measure: Callable[[str], tuple[object, float, object]]
    ) -> dict[str, list[Turn]]:
        found: dict[str, list[Turn]] = {name: [] for name in BUILDERS}
        for name in TURNS:
            result, limit, _ = measure(name)
            rate = result.rate(200)  # type: ignore[attr-defined]
            found[name].append(Turn(rate, limit))
            print(f"   {name}: {rate:,.1f}/s ({rate / limit:.2f} of its limit)", flush=True)
        return found

    def figure(
        self, what: str, unit: str, turns: dict[str, list[Turn]], backend: str, limit_name: str
    ) -> None:
        sealed = statistics.mean(t.rate for t in turns["sealed"])
        plain = statistics.mean(t.rate for t in turns["unsealed"])
        # Each turn against its own limit, too: the machine's capacity moves between turns.
        of_limit = {
            name: statistics.mean(t.rate / t.limit for t in found) for name, found in turns.items()
        }
        ratio = sealed / plain
        in_turns = ", ".join(
            f"{name} {turn.rate:,.1f}" for name, turn in zip(TURNS, _in_order(turns), strict=True)
        )
        self.bench.report.add(
            Figure(
                scenario=f"sealed vs unsealed: {what}",
                backend=backend,
                value=sealed,
                unit=unit,
                limit_name=f"unsealed {unit}",
                limit=plain,
                ratio=ratio,
                target=f">= {SEALED_TARGET}",
                met=ratio >= SEALED_TARGET,
                note=f"in turns: {in_turns}; of their {limit_name}: sealed "
                f"{of_limit['sealed']:.3f}, unsealed {of_limit['unsealed']:.3f} "
                f"(ratio {of_limit['sealed'] / of_limit['unsealed']:.3f})",
            )
        )


def _in_order(turns: dict[str, list[Turn]]) -> list[Turn]:
    taken = {name: iter(found) for name, found in turns.items()}
    return [next(taken[name]) for name in TURNS]


def seed(
    builder: Callable[[Settings], Container], settings: Settings, accounts: int, password_hash: str
) -> None:
    container = builder(settings)
    try:
        seed_accounts(container, 0, accounts, password_hash)
        if container.runs_in_one_process:
            drain_mail(container)
    finally:
        container.close()


def main() -> int:
    """`python -m bench.sealing`: this scenario alone (BENCH_SQLITE=0 skips the embedded
    default, BENCH_SEALING_POSTGRES=0 PostgreSQL + Redis)."""
    from bench.config import load_config
    from bench.run import Bench  # the scenario's host; imported here, bench.run imports us

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    bench = Bench(load_config(), work)
    SealingBench(bench).run()
    print()
    print(bench.report.table())
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
