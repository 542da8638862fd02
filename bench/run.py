"""`make bench`: load scenarios against a real `tessera serve`, each figure next to a limit
measured in the same run (the machine is shared and noisy, so absolute numbers mean little).

PostgreSQL + Redis (`tessera serve --workers N`, N = cores by default):
  login, /me (with the bare /health/live of the same server beside it), refresh, register,
  a login flood at a multiple of the hash bound with /me probed meanwhile, and login and /me
  again after growing the accounts from BENCH_ACCOUNTS_SMALL to BENCH_ACCOUNTS_LARGE; the
  OpenID Provider's client_credentials and introspection (bench/machine_tokens.py), userinfo
  and the authorization code exchange (bench/person_tokens.py).
The peer (bench/peer.py): a conventional CRUD auth service (fastapi-users) on the same
PostgreSQL with as many workers, its "who am I" and bare endpoint, beside tessera's /me.
The embedded default (SQLite, one process): login and /me.
Reading one's own writes (bench/own_writes.py): an activity read just after a profile change,
against the same read with nothing written before, on PostgreSQL + Redis and on SQLite.
The read side (bench/read_side.py): audit export speed and memory, projection rebuilds, and
projection lag under full login load.
Sealing (bench/sealing.py): login and /me beside the same service with sealing off, on SQLite
and on PostgreSQL + Redis. Erasure (bench/erasure.py): erasing accounts of 1,000 events, the
command and the read models, on SQLite and PostgreSQL. The hash gate's fairness
(bench/hash_fairness.py): a login while another account loops wrong passwords, against the
same login on a quiet server. Webhooks (bench/webhooks.py): deliveries per second to a local
receiver against its own rate under wrk, and the lag from commit to delivery at half that rate.
"""

from __future__ import annotations

import platform
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx
import psycopg

from bench import peer
from bench.config import BenchConfig, load_config
from bench.erasure import ErasureBench
from bench.hash_bound import verifies_per_second
from bench.hash_fairness import HashFairnessBench
from bench.load import LoadResult, Wrk
from bench.machine_tokens import machine_figures
from bench.own_writes import OwnWritesBench
from bench.person_tokens import person_figures
from bench.read_side import ReadSideBench
from bench.report import Figure, Report
from bench.saves import saves_figures
from bench.sealing import SealingBench
from bench.seed import PASSWORD, drain_mail, seed_accounts, username
from bench.seed import password_hash as seed_password_hash
from bench.service import Server, serve, service_env
from bench.webhooks import WebhookBench
from interfaces.container import build
from interfaces.settings import Settings, load_settings
from tests.servers import PostgresCluster, postgres_cluster, start_redis

RESULTS = Path(__file__).parent / "results"

LOGIN_TARGET = 0.95  # of the hash bound
ME_TARGET = 0.50  # of the bare endpoint
REFRESH_TARGET = 500.0  # per core, PostgreSQL + Redis
FLOOD_P99_TARGET_MS = 50.0
SCALE_TARGET = 0.90  # the large account count within 10% of the small one
PEER_TARGET = 3.0  # tessera's /me over a conventional CRUD auth service's "who am I"


class Bench:
    def __init__(self, config: BenchConfig, work: Path) -> None:
        self.config = config
        self.work = work
        self.settings = Settings()  # production defaults: the argon2 cost above all
        self.password_hash = seed_password_hash(self.settings)
        self.report = Report(meta=self._meta())
        self.last_bare = float("nan")  # the bare endpoint's req/s beside the last /me run

    def _meta(self) -> dict[str, object]:
        s = self.settings
        return {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cores": self.config.cores,
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "config": {**self.config.__dict__, "server_workers": self.config.server_workers},
            "argon2": {
                "time_cost": s.argon2_time_cost,
                "memory_cost_kib": s.argon2_memory_cost,
                "parallelism": s.argon2_parallelism,
            },
            "server": "uvicorn (tessera serve)",
            "bare_endpoint": "GET /health/live on the same server (same app, middleware, workers)",
        }

    # The scenarios' building blocks

    def wrk(self, script: str, url: str, connections: int, **options: str) -> Wrk:
        return Wrk(
            script=script,
            url=url,
            duration=self.config.duration,
            connections=connections,
            threads=self.config.threads,
            options=options,
        )

    def hash_bound(self) -> float:
        return verifies_per_second(self.settings, self.config.cores, self.config.hash_seconds)

    def bracketed(
        self, limit: Callable[[], float], load: Callable[[], LoadResult]
    ) -> tuple[LoadResult, float, tuple[float, float]]:
        """Runs the load between two measurements of its limit, and divides by their mean: the
        machine is shared, and its spare capacity drifts within minutes."""
        before = limit()
        result = load()
        after = limit()
        return result, (before + after) / 2, (before, after)

    def login(self, server: Server, accounts: int) -> LoadResult:
        return self.wrk(
            "login.lua",
            server.url,
            self.config.login_connections,
            accounts=str(accounts),
            password=PASSWORD,
        ).run()

    def bare(self, server: Server, path: str = "/health/live") -> float:
        result = self.wrk("get.lua", f"{server.url}{path}", self.config.connections).run()
        if result.rate(200) < result.rate():
            raise RuntimeError(f"the bare endpoint failed: {result.statuses} {result.errors}")
        return result.rate(200)

    def me(self, server: Server, tokens: Path, path: str = "/api/users/me") -> LoadResult:
        return self.wrk(
            "me.lua", server.url, self.config.connections, tokens=str(tokens), path=path
        ).run()

    def sign_in(self, server: Server, accounts: int, name: str) -> tuple[Path, Path]:
        """Real logins of distinct random accounts: files of their access and refresh tokens."""
        picks = random.sample(range(accounts), min(self.config.sessions, accounts))

        def log_in(n: int) -> dict[str, str]:
            for _ in range(20):
                answer = http.post(
                    "/api/auth/login", json={"login": username(n), "password": PASSWORD}
                )
                if answer.status_code != 503:
                    break
                time.sleep(0.5)
            if answer.status_code != 200:
                raise RuntimeError(f"login of {username(n)}: {answer.status_code} {answer.text}")
            tokens: dict[str, str] = answer.json()
            return tokens

        with httpx.Client(base_url=server.url, timeout=60) as http, ThreadPoolExecutor(4) as pool:
            pairs = list(pool.map(log_in, picks))
        access = self.work / f"{name}-access.txt"
        refresh = self.work / f"{name}-refresh.txt"
        access.write_text("".join(p["access_token"] + "\n" for p in pairs))
        refresh.write_text("".join(p["refresh_token"] + "\n" for p in pairs))
        return access, refresh

    def seed(self, settings: Settings, start: int, stop: int, backend: str) -> None:
        container = build(settings)
        try:
            seconds = seed_accounts(container, start, stop, self.password_hash)
            if container.runs_in_one_process:
                drain_mail(container)
        finally:
            container.close()
        self.report.add(
            Figure(
                scenario=f"seed accounts {start:,}..{stop:,}",
                backend=backend,
                value=(stop - start) / seconds,
                unit="account/s",
                note=f"{stop - start:,} accounts in {seconds:.1f} s through the application layer "
                "(one precomputed argon2 hash, 500 accounts per atomic save)",
            )
        )

    # Figures

    def login_figure(self, server: Server, accounts: int, backend: str) -> tuple[Figure, float]:
        result, bound, around = self.bracketed(
            self.hash_bound, lambda: self.login(server, accounts)
        )
        ratio = result.rate(200) / bound
        figure = self.report.add(
            Figure(
                scenario=f"login ({accounts:,} accounts)",
                backend=backend,
                value=result.rate(200),
                unit="login/s",
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                limit_name="argon2 verify/s",
                limit=bound,
                ratio=ratio,
                target=f">= {LOGIN_TARGET}",
                met=ratio >= LOGIN_TARGET,
                note=_join(_bound_note(around), _odd_answers(result, 200)),
                load=result.as_json(),
            )
        )
        return figure, bound

    def me_figure(self, server: Server, accounts: int, tokens: Path, backend: str) -> Figure:
        result, bare, around = self.bracketed(
            lambda: self.bare(server), lambda: self.me(server, tokens)
        )
        self.last_bare = bare
        ratio = result.rate(200) / bare
        return self.report.add(
            Figure(
                scenario=f"GET /api/users/me ({accounts:,} accounts)",
                backend=backend,
                value=result.rate(200),
                unit="req/s",
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                limit_name="bare /health/live req/s",
                limit=bare,
                ratio=ratio,
                target=f">= {ME_TARGET}",
                met=ratio >= ME_TARGET,
                note=_join(
                    f"bare endpoint {around[0]:,.0f} req/s before, {around[1]:,.0f} after",
                    _odd_answers(result, 200),
                ),
                load=result.as_json(),
            )
        )

    def refresh_figure(self, server: Server, tokens: Path, backend: str) -> None:
        result = self.wrk(
            "refresh.lua", server.url, self.config.connections, tokens=str(tokens)
        ).run()
        per_core = result.rate(200) / self.config.cores
        of_bare = result.rate(200) / self.last_bare
        self.report.add(
            Figure(
                scenario="refresh",
                backend=backend,
                value=result.rate(200),
                unit="refresh/s",
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                limit_name="cores",
                limit=float(self.config.cores),
                ratio=per_core,
                target=f">= {REFRESH_TARGET:.0f}/core",
                met=per_core >= REFRESH_TARGET,
                note=_join(
                    f"ratio is refresh/s per core; {of_bare:.2f} of the bare endpoint's req/s",
                    _odd_answers(result, 200),
                ),
                load=result.as_json(),
            )
        )

    def register_figure(self, server: Server, backend: str) -> None:
        register = self.wrk(
            "register.lua", server.url, self.config.login_connections, run=secrets.token_hex(3)
        )
        result, bound, around = self.bracketed(self.hash_bound, register.run)
        self.report.add(
            Figure(
                scenario="register",
                backend=backend,
                value=result.rate(201),
                unit="register/s",
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                limit_name="argon2 verify/s",
                limit=bound,
                ratio=result.rate(201) / bound,
                note=_join(
                    "one argon2 hash per registration; no target",
                    _bound_note(around),
                    _odd_answers(result, 201),
                ),
                load=result.as_json(),
            )
        )

    def flood_figures(self, server: Server, accounts: int, tokens: Path, backend: str) -> None:
        c = self.config
        bound = self.hash_bound()
        offered = c.flood_factor * bound
        # One connection per wrk thread, so each answer is timed by its status (see common.lua).
        flood = Wrk(
            script="login.lua",
            url=server.url,
            duration=c.duration,
            connections=c.flood_connections,
            threads=c.flood_connections,
            options={"accounts": str(accounts), "password": PASSWORD, "rate": f"{offered:.2f}"},
        ).start()
        probe = Wrk(
            script="me.lua",
            url=server.url,
            duration=c.duration,
            connections=c.probe_connections,
            threads=c.probe_connections,
            options={"tokens": str(tokens)},
        ).start()
        shed, me = flood.result(), probe.result()
        after = self.hash_bound()
        overloaded = shed.by_status.get("503", {})
        served = shed.by_status.get("200", {})
        self.report.add(
            Figure(
                scenario=f"login flood at {c.flood_factor:g}x bound",
                backend=backend,
                value=shed.rate(),
                unit="login/s offered",
                p50_ms=overloaded.get("p50_ms"),
                p99_ms=overloaded.get("p99_ms"),
                limit_name="argon2 verify/s",
                limit=bound,
                ratio=shed.rate() / bound,
                note=(
                    f"offered rate set from the bound before ({bound:.1f}/s; {after:.1f}/s after); "
                    f"503 share {shed.share(503):.0%}; p50/p99 are of the 503 answers; "
                    f"{shed.rate(200):.1f} login/s served "
                    f"({shed.rate(200) / bound:.2f} of the bound, p50 {served.get('p50_ms', 0):.0f} ms, "
                    f"p99 {served.get('p99_ms', 0):.0f} ms); statuses {shed.statuses}"
                    + _errors(shed)
                ),
                load=shed.as_json(),
            )
        )
        self.report.add(
            Figure(
                scenario="GET /api/users/me during the flood",
                backend=backend,
                value=me.rate(200),
                unit="req/s",
                p50_ms=me.p50_ms,
                p99_ms=me.p99_ms,
                limit_name="p99 ms",
                limit=FLOOD_P99_TARGET_MS,
                ratio=me.p99_ms / FLOOD_P99_TARGET_MS,
                target="p99 < 50 ms",
                met=me.p99_ms < FLOOD_P99_TARGET_MS,
                note=f"{c.probe_connections} connections, a latency probe"
                + (f"; {_odd_answers(me, 200)}" if _odd_answers(me, 200) else ""),
                load=me.as_json(),
            )
        )

    def scale_figure(self, what: str, small: Figure, large: Figure, backend: str) -> None:
        assert small.ratio is not None and large.ratio is not None
        ratio = large.ratio / small.ratio
        self.report.add(
            Figure(
                scenario=f"{what}: {self.config.accounts_large:,} vs {self.config.accounts_small:,} accounts",
                backend=backend,
                value=ratio,
                unit="x",
                limit_name="each as a ratio to its own limit",
                ratio=ratio,
                target=f">= {SCALE_TARGET}",
                met=ratio >= SCALE_TARGET,
            )
        )

    # The runs

    def postgres(self) -> None:
        c = self.config
        backend = f"PG+Redis, {c.server_workers} workers"
        print(f"== PostgreSQL + Redis, tessera serve --workers {c.server_workers}", flush=True)
        with postgres_cluster(durable=True) as cluster:
            self.report.meta["postgres"] = check_durability(cluster)
            if c.saves:
                saves_figures(self, cluster)
            redis = start_redis()
            try:
                env = service_env(self.work / "pg", cluster.new_database(), redis.url)
                (self.work / "pg").mkdir()
                settings = load_settings(env)
                self.seed(settings, 0, c.accounts_small, backend)
                with serve(env, c.server_workers, self.work / "pg-server.log") as server:
                    self.warm(server)
                    login_small, _ = self.login_figure(server, c.accounts_small, backend)
                    access, refresh = self.sign_in(server, c.accounts_small, "pg-small")
                    me_small = self.me_figure(server, c.accounts_small, access, backend)
                    compared = (me_small, self.last_bare, c.accounts_small)
                    machine_figures(self, server, settings, access, backend)
                    person_figures(self, server, settings, access, c.accounts_small, backend)
                    self.refresh_figure(server, refresh, backend)
                    self.register_figure(server, backend)
                    self.flood_figures(server, c.accounts_small, access, backend)
                    if c.accounts_large > c.accounts_small:
                        self.seed(settings, c.accounts_small, c.accounts_large, backend)
                        login_large, _ = self.login_figure(server, c.accounts_large, backend)
                        access, _ = self.sign_in(server, c.accounts_large, "pg-large")
                        me_large = self.me_figure(server, c.accounts_large, access, backend)
                        compared = (me_large, self.last_bare, c.accounts_large)
                        self.scale_figure("login", login_small, login_large, backend)
                        self.scale_figure("/me", me_small, me_large, backend)
                    if c.peer:
                        self.peer(cluster, server, *compared)
                    if c.granian:
                        self.granian(env, server, compared[2])
            finally:
                redis.stop()

    def peer(
        self,
        cluster: PostgresCluster,
        tessera: Server,
        tessera_me: Figure,
        tessera_bare: float,
        accounts: int,
    ) -> None:
        """fastapi-users (SQLAlchemy async + asyncpg, a bearer JWT) on a database of its own in
        the same cluster, with as many workers and users as tessera's /me just before, driven by
        the same wrk script and settings. tessera's server stays up (idle) meanwhile, so that its
        /me is measured again just after: the peer's figure sits between two of tessera's."""
        c = self.config
        backend = f"PG, {c.server_workers} workers, fastapi-users"
        print(f"== the peer: fastapi-users, uvicorn with {c.server_workers} workers", flush=True)
        bin_dir = peer.install()
        database = cluster.new_database()
        seconds = peer.seed(bin_dir, database, accounts, PASSWORD)
        print(f"   seeded {accounts:,} users in {seconds:.1f} s", flush=True)
        with peer.serve(bin_dir, database, c.server_workers, self.work / "peer.log") as server:
            self.warm(server, peer.BARE_PATH)
            tokens = peer.sign_in(
                server, accounts, c.sessions, PASSWORD, self.work / "peer-access.txt"
            )
            result, bare, around = self.bracketed(
                lambda: self.bare(server, peer.BARE_PATH),
                lambda: self.me(server, tokens, peer.ME_PATH),
            )
        # Fresh logins: the first ones' access tokens may have expired by now.
        access, _ = self.sign_in(tessera, accounts, "pg-again")
        again = self.me(tessera, access)
        who_am_i = result.rate(200)
        self.report.add(
            Figure(
                scenario=f"peer: GET /users/me ({accounts:,} users)",
                backend=backend,
                value=who_am_i,
                unit="req/s",
                p50_ms=result.p50_ms,
                p99_ms=result.p99_ms,
                limit_name="peer bare /health req/s",
                limit=bare,
                ratio=who_am_i / bare,
                note=_join(
                    f"bare endpoint {around[0]:,.0f} req/s before, {around[1]:,.0f} after",
                    _odd_answers(result, 200),
                ),
                load=result.as_json(),
            )
        )
        self.report.add(
            Figure(
                scenario="peer: bare GET /health",
                backend=backend,
                value=bare,
                unit="req/s",
                limit_name="tessera bare /health/live req/s",
                limit=tessera_bare,
                ratio=bare / tessera_bare,
                note="FastAPI's bare endpoint against Litestar's (with tessera's middleware)",
            )
        )
        assert tessera_me.value is not None and tessera_me.ratio is not None
        ours = (tessera_me.value + again.rate(200)) / 2
        ratio = ours / who_am_i if who_am_i else float("inf")
        self.report.add(
            Figure(
                scenario=f"tessera /me vs peer /users/me ({accounts:,} accounts)",
                backend=f"PG, {c.server_workers} workers",
                value=ratio,
                unit="x",
                limit_name="peer /users/me req/s",
                limit=who_am_i,
                ratio=ratio,
                target=f">= {PEER_TARGET:g}",
                met=ratio >= PEER_TARGET,
                note=_join(
                    f"tessera /me {tessera_me.value:,.0f} req/s before the peer "
                    f"({tessera_me.ratio:.2f} of its bare endpoint), {again.rate(200):,.0f} "
                    f"after; the peer's {who_am_i:,.0f} ({who_am_i / bare:.2f} of its own)",
                    _odd_answers(again, 200),
                ),
            )
        )

    def refresh_only(self) -> None:
        """`python -m bench.saves`: the refresh scenario alone, beside the bare endpoint."""
        c = self.config
        backend = f"PG+Redis, {c.server_workers} workers"
        with postgres_cluster(durable=True) as cluster:
            redis = start_redis()
            try:
                env = service_env(self.work / "pg", cluster.new_database(), redis.url)
                (self.work / "pg").mkdir()
                self.seed(load_settings(env), 0, c.accounts_small, backend)
                with serve(env, c.server_workers, self.work / "pg-server.log") as server:
                    self.warm(server)
                    _, refresh = self.sign_in(server, c.accounts_small, "pg-small")
                    self.last_bare = self.bare(server)
                    self.refresh_figure(server, refresh, backend)
            finally:
                redis.stop()

    def granian(self, env: dict[str, str], uvicorn: Server, accounts: int) -> None:
        """The same app factory, workers and database under granian, beside the uvicorn server
        still running: the two are measured in turns, uvicorn, granian, granian, uvicorn (each
        turn its bare endpoint, then /me, then its bare endpoint again), so a drift of the
        machine's capacity during the four turns, steady in either direction, favours neither
        (in the order uvicorn, granian, uvicorn, granian a rising machine favoured granian).
        Each server idles while the other is measured."""
        c = self.config
        backend = f"PG+Redis, {c.server_workers} workers, granian"
        if not (Path(sys.executable).parent / "granian").exists():
            note = "skipped: granian is not installed (`make bench` installs it)"
            self.report.add(Figure("granian vs uvicorn", backend, None, "", note=note))
            return
        print(f"== the same under granian --workers {c.server_workers}, in turns", flush=True)
        with serve(
            env, c.server_workers, self.work / "granian.log", server_name="granian"
        ) as server:
            self.warm(server)
            tokens = {
                "uvicorn": self.sign_in(uvicorn, accounts, "turns-uvicorn")[0],
                "granian": self.sign_in(server, accounts, "turns-granian")[0],
            }
            servers = {"uvicorn": uvicorn, "granian": server}
            found: dict[str, list[tuple[float, float]]] = {"uvicorn": [], "granian": []}
            for name in ("uvicorn", "granian", "granian", "uvicorn"):
                target, access = servers[name], tokens[name]
                result, bare, _ = self.bracketed(
                    partial(self.bare, target), partial(self.me, target, access)
                )
                found[name].append((bare, result.rate(200)))
                print(f"   {name}: bare {bare:,.0f} req/s, /me {result.rate(200):,.0f}", flush=True)
        (u1, u2), (g1, g2) = found["uvicorn"], found["granian"]
        for what, index in (
            ("bare /health/live", 0),
            (f"GET /api/users/me ({accounts:,} accounts)", 1),
        ):
            ours = (u1[index] + u2[index]) / 2
            theirs = (g1[index] + g2[index]) / 2
            self.report.add(
                Figure(
                    scenario=f"granian vs uvicorn: {what}",
                    backend=backend,
                    value=theirs,
                    unit="req/s",
                    limit_name="uvicorn req/s",
                    limit=ours,
                    ratio=theirs / ours,
                    note=f"in turns: uvicorn {u1[index]:,.0f}, granian {g1[index]:,.0f}, "
                    f"granian {g2[index]:,.0f}, uvicorn {u2[index]:,.0f}; granian's /me "
                    f"{g1[1] / g1[0]:.2f} and {g2[1] / g2[0]:.2f} of its bare endpoint, "
                    f"uvicorn's {u1[1] / u1[0]:.2f} and {u2[1] / u2[0]:.2f}",
                )
            )

    def sqlite(self) -> None:
        c = self.config
        backend = "SQLite, 1 process"
        print("== the embedded default: SQLite, tessera serve (one process)", flush=True)
        env = service_env(self.work / "sqlite", None, None)
        (self.work / "sqlite").mkdir()
        self.seed(load_settings(env), 0, c.accounts_small, backend)
        with serve(env, 1, self.work / "sqlite-server.log") as server:
            self.warm(server)
            self.login_figure(server, c.accounts_small, backend)
            access, _ = self.sign_in(server, c.accounts_small, "sqlite")
            self.me_figure(server, c.accounts_small, access, backend)

    def warm(self, server: Server, path: str = "/health/live") -> None:
        """A few seconds of the bare endpoint, so imports and connection pools are warm."""
        Wrk(script="get.lua", url=f"{server.url}{path}", duration=2, connections=4, threads=2).run()


@contextmanager
def seeded_service(
    bench: Bench, accounts: int, name: str, log: str = "server.log"
) -> Iterator[tuple[Server, Settings, Path, Path]]:
    """`accounts` seeded on PostgreSQL (durable) + Redis, then `tessera serve --workers N`
    warmed and signed in to: the server, its settings, and the files of the access and refresh
    tokens of the sign-ins (named `name`)."""
    config, work = bench.config, bench.work
    with postgres_cluster(durable=True) as cluster:
        redis = start_redis()
        try:
            env = service_env(work / "pg", cluster.new_database(), redis.url)
            (work / "pg").mkdir()
            settings = load_settings(env)
            bench.seed(settings, 0, accounts, f"PG+Redis, {config.server_workers} workers")
            with serve(env, config.server_workers, work / log) as server:
                bench.warm(server)
                access, refresh = bench.sign_in(server, accounts, name)
                yield server, settings, access, refresh
        finally:
            redis.stop()


def signed_in_alone(
    figures: Callable[[Bench, Server, Settings, Path, str], None], name: str
) -> int:
    """`python -m bench.<module>` for a module's figures alone: the small population seeded on
    PostgreSQL (durable) + Redis, `tessera serve --workers N` warmed and signed in to as by
    `make bench`, then `figures` given the access tokens; the report is written to
    bench/results/<name>-<time>.json and the work folder (server log) is kept."""
    config = load_config()
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-op-"))
    bench = Bench(config, work)
    backend = f"PG+Redis, {config.server_workers} workers"
    with seeded_service(bench, config.accounts_small, "pg-small", "pg-server.log") as service:
        server, settings, access, _ = service
        figures(bench, server, settings, access, backend)
    path = RESULTS / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    bench.report.write(path)
    print()
    print(bench.report.table())
    print(f"\nwritten to {path} (server log in {work})")
    return 0


def check_durability(cluster: PostgresCluster) -> dict[str, str]:
    """The cluster's flush settings, as the server reports them: the published figures are of a
    PostgreSQL that flushes every commit, as a real deployment does (the tests' is not)."""
    with psycopg.connect(cluster.admin_url) as conn:
        found = {
            name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("fsync", "synchronous_commit")
        }
    if found != {"fsync": "on", "synchronous_commit": "on"}:
        raise RuntimeError(f"the bench's PostgreSQL must flush every commit: {found}")
    return found


def _odd_answers(result: LoadResult, expected: int) -> str:
    odd = {s: n for s, n in result.statuses.items() if s != str(expected)}
    return (f"other answers {odd}" if odd else "") + _errors(result)


def _bound_note(around: tuple[float, float]) -> str:
    return f"argon2 bound {around[0]:.1f} verify/s before, {around[1]:.1f} after"


def _join(*parts: str) -> str:
    return "; ".join(p.strip("; ") for p in parts if p.strip("; "))


def _errors(result: LoadResult) -> str:
    errors = {k: v for k, v in result.errors.items() if v and k != "status"}
    return f"; wrk errors {errors}" if errors else ""


def main() -> int:
    config = load_config()
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    bench = Bench(config, work)
    print(
        f"tessera bench: {config.cores} cores, {config.duration} s per scenario, argon2 "
        f"t={bench.settings.argon2_time_cost} m={bench.settings.argon2_memory_cost} KiB "
        f"p={bench.settings.argon2_parallelism}; work in {work}",
        flush=True,
    )
    runs: list[Callable[[], None]] = [bench.postgres]
    if config.sqlite:
        runs.append(bench.sqlite)
    if config.own_writes:
        runs.append(OwnWritesBench(bench).run)
    if config.read_side:
        runs.append(ReadSideBench(bench).run)
    if config.sealing:
        runs.append(SealingBench(bench).run)
    if config.erasure:
        runs.append(ErasureBench(bench).run)
    if config.hash_fairness:
        runs.append(HashFairnessBench(bench).run)
    if config.webhooks:
        runs.append(WebhookBench(bench).run)
    failed = True
    try:
        for run in runs:
            run()
        failed = False
    finally:
        bench.report.meta["seconds"] = round((datetime.now(UTC) - started).total_seconds())
        path = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
        bench.report.write(path)
        print()
        print(bench.report.table())
        print(f"\nwritten to {path}")
        if failed:
            print(f"kept {work} (server logs) for a look at what failed")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0
