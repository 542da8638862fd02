"""`python -m bench.scale`: what a login, `GET /me` and a refresh cost PostgreSQL at a small and
a large account count, and how large the event table and its indexes are at each, in one run
on one PostgreSQL cluster with production durability (`fsync`, `synchronous_commit` on).

Accounts are seeded through the application layer (`bench/seed.py`: registered and verified,
five events each). At each size, after `VACUUM ANALYZE`, each request kind is made a dozen times
to warm caches and prepared statements, then counted over `--runs` runs: PostgreSQL buffers touched
(shared blocks hit + read, from `pg_stat_statements`, which the cluster is restarted to load),
blocks dirtied, rows, statements, saves and events. Counts, not times, so the other tenants of a
shared machine do not move them. `--seconds` adds a short in-process rate of each (timed, so
noisy; 0 skips it). Not part of `make bench`: a million accounts take 5-15 minutes to seed.

    .venv/bin/python -m bench.scale --small 1000 --large 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from application.views import AccountView, Client
from bench.costs import Count, counting, sizes
from bench.run import check_durability
from bench.seed import PASSWORD, seed_accounts, username
from bench.seed import password_hash as seed_password_hash
from bench.service import service_env
from domain.account import Account
from interfaces.container import Container, build
from interfaces.settings import load_settings
from tests.servers import postgres_cluster, start_redis

CLIENT = Client(ip="127.0.0.1", user_agent="bench")
TABLE = "tessera_events"
_SEED_CHUNK = 50_000
# psycopg prepares a statement on its fifth execution on a connection; the pool has several.
_WARM_UP = 12
_MAX_RUNS = 100

_STATEMENTS = (
    "SELECT coalesce(sum(shared_blks_hit + shared_blks_read), 0), "
    "coalesce(sum(shared_blks_read), 0), coalesce(sum(shared_blks_dirtied), 0), "
    "coalesce(sum(rows), 0), coalesce(sum(calls), 0) FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND query NOT LIKE '%%pg_stat_statements%%'"
)


def _say(line: str) -> None:
    print(line, flush=True)


def seed(container: Container, start: int, stop: int, password_hash: str) -> None:
    for first in range(start, stop, _SEED_CHUNK):
        last = min(first + _SEED_CHUNK, stop)
        seconds = seed_accounts(container, first, last, password_hash)
        _say(f"  seeded {last:,} accounts ({(last - first) / seconds:,.0f}/s)")


def request_kinds(container: Container, url: str, accounts: int) -> dict[str, Callable[[], None]]:
    """A login of an account from the middle of the seeded range, a refresh of its latest
    pair, and `/me` (the token check and the profile) with the latest access token."""
    latest: dict[str, Any] = {}
    who = username(accounts // 2)
    loop = asyncio.new_event_loop()  # one loop, as a server process has

    def log_in() -> None:
        latest["pair"] = container.login.log_in(who, PASSWORD, CLIENT)

    def refresh() -> None:
        rotation = container.sessions.rotate(latest["pair"].refresh_token)
        latest["pair"] = loop.run_until_complete(rotation)

    async def authenticated_me() -> None:
        caller = await container.access.authenticate(latest["pair"].access_token)
        await container.profile.show(caller)

    def me() -> None:
        loop.run_until_complete(authenticated_me())

    # Each process keeps copies of at most AGGREGATE_CACHE_SIZE accounts: at a million, most
    # `/me` calls find none and load the account's events. These ids were never loaded here
    # (read by SQL: a lookup through the application would cache the account).
    with psycopg.connect(url) as conn:
        unseen_ids = [
            row[0]
            for row in conn.execute(
                "SELECT originator_id FROM tessera_events WHERE topic LIKE %s AND originator_version = 1"
                " ORDER BY notification_id OFFSET %s LIMIT %s",
                ("%Account.Registered", accounts // 4, _WARM_UP + _MAX_RUNS),
            )
        ]

    def me_unseen() -> None:
        account = container.log.find(unseen_ids.pop(), Account)
        assert account is not None
        AccountView.of(account)

    return {
        "login": log_in,
        "GET /me": me,
        "GET /me, account loaded from the store": me_unseen,
        "refresh": refresh,
    }


def counted(
    container: Container, observer: Count, url: str, request: Callable[[], None], runs: int
) -> dict[str, float]:
    """Per request, the median of `runs` runs."""
    samples: list[Counter[str]] = []
    with psycopg.connect(url, autocommit=True) as stats:
        for _ in range(runs):
            stats.execute("SELECT pg_stat_statements_reset()")
            counts: Counter[str] = Counter()
            before = Counter(observer.counts)
            with counting(counts):
                request()
            counts.update(observer.counts - before)
            row = stats.execute(_STATEMENTS).fetchone()
            assert row is not None
            touched, read, dirtied, rows, calls = (int(v) for v in row)
            counts.update(
                {
                    "buffers touched": touched,
                    "buffers read": read,
                    "buffers dirtied": dirtied,
                    "rows": rows,
                    "statements": calls,
                }
            )
            samples.append(counts)
    keys = sorted({k for sample in samples for k in sample})
    return {k: statistics.median(sample[k] for sample in samples) for k in keys}


def index_levels(url: str) -> dict[str, int]:
    """Each B-tree index's height: a lookup or insertion reads one page per level."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT i.relname, (bt_metap(i.relname::text)).level + 1 FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "WHERE t.relname = 'tessera_events'"
        ).fetchall()
    return {name: levels for name, levels in rows}


def rate(request: Callable[[], None], seconds: float) -> float:
    done = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        request()
        done += 1
    return done / (time.perf_counter() - began)


def measure(
    container: Container, observer: Count, url: str, accounts: int, runs: int, seconds: float
) -> Costs:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE tessera_events")
        events = conn.execute("SELECT count(*) FROM tessera_events").fetchone()
    assert events is not None
    _say(f"{accounts:,} accounts, {events[0]:,} events")
    for name, size in sizes(url, TABLE).items():
        per_million = size / accounts * 1_000_000 / 2**20
        _say(f"  {name}: {size / 2**20:,.1f} MiB, {per_million:,.0f} MiB per million accounts")
    for name, levels in index_levels(url).items():
        _say(f"  {name}: {levels} levels (pages read by each descent)")
    results = {}
    for name, request in request_kinds(container, url, accounts).items():
        for _ in range(_WARM_UP):
            request()
        results[name] = counted(container, observer, url, request, runs)
        if seconds > 0 and "loaded" not in name:
            results[name]["per second (in process, timed)"] = rate(request, seconds)
        _say(f"  {name}: " + ", ".join(f"{k} {v:g}" for k, v in sorted(results[name].items())))
    return results


Costs = dict[str, dict[str, float]]


def compare(small: int, large: int, runs: int, seconds: float) -> tuple[Costs, Costs]:
    """Each request kind's counts at `small` accounts, then at `large` on the same database."""
    with (
        tempfile.TemporaryDirectory(prefix="tessera-scale-") as work,
        postgres_cluster(durable=True) as cluster,
    ):
        cluster.options += " -c shared_preload_libraries=pg_stat_statements"
        cluster.pg_ctl("stop")
        cluster.pg_ctl("start")
        check_durability(cluster)
        server = start_redis()
        try:
            url = cluster.new_database()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
                conn.execute("CREATE EXTENSION pageinspect")
            settings = load_settings(service_env(Path(work), url, server.url))
            container = build(settings)
            observer = Count()
            container.log.observers.append(observer)
            password_hash = seed_password_hash(settings)
            seed(container, 0, small, password_hash)
            at_small = measure(container, observer, url, small, runs, seconds)
            began = time.perf_counter()
            seed(container, small, large, password_hash)
            _say(f"  seeding took {time.perf_counter() - began:,.0f} s")
            at_large = measure(container, observer, url, large, runs, seconds)
            container.close()
        finally:
            server.stop()
    return at_small, at_large


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument(
        "--runs", type=int, default=15, help="counted runs of each request (median)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="timed rate of each; 0: none")
    args = parser.parse_args(argv)
    if args.runs > _MAX_RUNS:
        parser.error(f"--runs: at most {_MAX_RUNS}")
    small, large = compare(args.small, args.large, args.runs, args.seconds)
    _say(f"\nper request, {args.large:,} accounts / {args.small:,} (median of {args.runs} runs):")
    for name in small:
        _say(f"  {name}:")
        for key, value in sorted(small[name].items()):
            ratio = large[name][key] / value if value else float("nan")
            _say(f"    {key}: {value:g} -> {large[name][key]:g} ({ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
