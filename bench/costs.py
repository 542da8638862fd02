"""`python -m bench.costs`: what each kind of request costs the stores, counted, not timed: saves
(event-store transactions), events, PostgreSQL round trips and Redis commands, through the
application layer on PostgreSQL + Redis (each request made once to warm prepared statements and
caches, then counted on its second run). Also the event table's and its indexes' sizes per
seeded account (`bench/seed.py`: registered and verified), scaled to a million accounts.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import redis
import redis.asyncio

from application.persistence.event_log import SaveObserver
from application.views import Client
from bench.seed import PASSWORD, seed_accounts, username
from bench.seed import password_hash as seed_password_hash
from bench.service import service_env
from interfaces.container import Container, build
from interfaces.settings import load_settings
from tests.servers import postgres_cluster, start_redis

CLIENT = Client(ip="127.0.0.1", user_agent="bench")
SIZE_ACCOUNTS = 20_000


class Count(SaveObserver):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def saved(self, events: list[Any], seconds: float) -> None:
        self.counts["saves"] += 1
        self.counts["events"] += len(events)


@contextmanager
def counting(counts: Counter[str]) -> Iterator[None]:
    """Counts PostgreSQL statements (each a round trip: the request path runs in autocommit, and
    the library's pipelines are not used) and Redis commands (a pipeline counts once) while the
    block runs, in every thread."""
    execute, command, pipeline, async_command = (
        psycopg.Cursor.execute,
        redis.Redis.execute_command,
        redis.client.Pipeline.execute,
        redis.asyncio.Redis.execute_command,
    )

    def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["postgres round trips"] += 1
        return execute(self, *args, **kwargs)

    def counted_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["redis commands"] += 1
        return command(self, *args, **kwargs)  # type: ignore[no-untyped-call]

    async def counted_async_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["redis commands"] += 1
        return await async_command(self, *args, **kwargs)  # type: ignore[no-untyped-call]

    def counted_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["redis commands"] += 1
        return pipeline(self, *args, **kwargs)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
    redis.Redis.execute_command = counted_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = counted_pipeline  # type: ignore[method-assign]
    redis.asyncio.Redis.execute_command = counted_async_command  # type: ignore[method-assign]
    try:
        yield
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        redis.Redis.execute_command = command  # type: ignore[method-assign]
        redis.client.Pipeline.execute = pipeline  # type: ignore[method-assign]
        redis.asyncio.Redis.execute_command = async_command  # type: ignore[method-assign]


def request_costs(container: Container, observer: Count) -> dict[str, Counter[str]]:
    """Each request kind made twice; the second run's counts."""
    n = iter(range(10**6))
    latest: dict[str, Any] = {}

    def register() -> None:
        i = next(n)
        container.registration.register(f"cost{i}@bench.test", f"cost{i}", PASSWORD)

    def log_in() -> None:
        latest["pair"] = container.login.log_in(username(0), PASSWORD, CLIENT)

    def refresh() -> None:
        rotation = container.sessions.rotate(latest["pair"].refresh_token)
        latest["pair"] = loop.run_until_complete(rotation)

    async def authenticated_me() -> None:
        caller = await container.access.authenticate(latest["pair"].access_token)
        await container.profile.show(caller)

    loop = asyncio.new_event_loop()  # one loop, as a server process has

    def me() -> None:
        loop.run_until_complete(authenticated_me())

    kinds: dict[str, Callable[[], None]] = {
        "register": register,
        "login": log_in,
        "refresh": refresh,
        "GET /me (token check, account from memory when unchanged)": me,
    }
    costs = {}
    for name, request in kinds.items():
        request()
        counts: Counter[str] = Counter()
        before = Counter(observer.counts)
        with counting(counts):
            request()
        counts.update(observer.counts - before)
        costs[name] = counts
    return costs


def sizes(url: str, table: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) - pg_indexes_size(c.oid) "
            "FROM pg_class c WHERE c.relname = %s "
            "UNION ALL SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "WHERE t.relname = %s",
            (table, table),
        ).fetchall()
    return {name: size for name, size in rows}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="tessera-costs-"))
    with postgres_cluster(durable=True) as cluster:
        server = start_redis()
        try:
            url = cluster.new_database()
            env = service_env(work, url, server.url)
            settings = load_settings(env)
            container = build(settings)
            observer = Count()
            container.log.observers.append(observer)
            password_hash = seed_password_hash(settings)
            seed_accounts(container, 0, SIZE_ACCOUNTS, password_hash)
            table = "tessera_events"
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE tessera_events")
                events = conn.execute("SELECT count(*) FROM tessera_events").fetchone()
            assert events is not None
            print(f"{SIZE_ACCOUNTS:,} seeded accounts, {events[0]:,} events")
            for name, size in sizes(url, table).items():
                per_million = size / SIZE_ACCOUNTS * 1_000_000 / 2**20
                print(
                    f"  {name}: {size / 2**20:.1f} MiB, {per_million:,.0f} MiB per million accounts"
                )
            for name, counts in request_costs(container, observer).items():
                print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
            container.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
