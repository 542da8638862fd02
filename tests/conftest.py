from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from infrastructure.data_keys import SqliteDataKeyTable, WrappedDataKeys
from infrastructure.keyring import Keyring
from interfaces.container import Container, build
from interfaces.http.app import create_app
from interfaces.settings import Settings, load_settings
from tests.servers import PostgresCluster, RedisServer, postgres_cluster, start_redis

# Cheap argon2 parameters: the tests are about rules, not hash strength (bench/ measures that).
FAST_ARGON2 = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_COST": "1024", "ARGON2_PARALLELISM": "1"}


class FakeClock:
    """The one fake the tests allow: time, moved by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            # Each reading advances a microsecond, so events never share an instant.
            self._now += timedelta(microseconds=1)
            return self._now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self._now += timedelta(**delta)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """ops/docker-compose.yml, parsed (the ops tests of Prometheus, Grafana and ELK read it)."""
    import yaml

    document = yaml.safe_load(
        (Path(__file__).parent.parent / "ops" / "docker-compose.yml").read_text()
    )
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


_SPANS: Any = None


@pytest.fixture(scope="session")
def spans() -> Any:
    """Every span this test process records, kept in memory (OpenTelemetry's own exporter)."""
    global _SPANS
    if _SPANS is None:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        _SPANS = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_SPANS))
        trace.set_tracer_provider(provider)
    return _SPANS


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings_environ() -> dict[str, str]:
    """Settings a module's tests need beside the defaults: a module overrides this fixture."""
    return {}


@pytest.fixture(params=["sqlite", "postgres+redis"])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, settings_environ: dict[str, str]
) -> Settings:
    """A fresh service on the embedded default, and on PostgreSQL with Redis (production),
    with the module's `settings_environ`."""
    environ = {"DATA_DIR": str(tmp_path / "var"), **FAST_ARGON2, **settings_environ}
    if request.param == "postgres+redis":
        environ["DATABASE_URL"] = request.getfixturevalue("postgres").new_database()
        environ["REDIS_URL"] = request.getfixturevalue("redis_url")
    return load_settings(environ)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return load_settings({"DATA_DIR": str(tmp_path / "var"), **FAST_ARGON2})


@pytest.fixture
def container(settings: Settings, clock: FakeClock) -> Iterator[Container]:
    built = build(settings, clock=clock)
    built.mail_broker.start_worker(threads=1, poll_ms=20)  # a real Dramatiq worker, in this process
    yield built
    built.close()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient[Any]]:
    # Projections are run by hand in these tests (see run_projections), not by a thread.
    with TestClient(create_app(container, run_background=False)) as test_client:
        yield test_client


def data_keys(directory: Path) -> WrappedDataKeys:
    """Data keys for an EventLog made without a container (in a file of the test's own)."""
    return WrappedDataKeys(Keyring(os.urandom(32)), SqliteDataKeyTable(directory / "keys.sqlite"))


def event_count(container: Container) -> int:
    return container.log.recorder.max_notification_id() or 0


def run_projections(container: Container) -> None:
    """Runs every projection to the end of the log, then waits for the mail queue to drain.
    Where the app's own projector threads run too (an app made with its background work), a
    batch either of them applied first is a tracking conflict for the other: read on."""
    from eventsourcing.persistence import IntegrityError

    for projector in container.projectors:
        while True:
            before = projector.position
            try:
                if not projector.run_once():
                    break
            except IntegrityError:
                if projector.position == before:
                    raise  # nobody else moved it on: a conflict of the projection's own
    container.mail_broker.join()


_LOOPS = threading.local()


def run_async(coroutine: Any) -> Any:
    """Runs an async use case from a synchronous test, on one event loop per thread (as a
    server process has one), so the async Redis client each loop gets is made once."""
    import asyncio

    loop = getattr(_LOOPS, "loop", None)
    if loop is None:
        loop = _LOOPS.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coroutine)


def authenticated(container: Container, token: str) -> Any:
    """The caller an access token speaks for, as the HTTP edge checks it."""
    return run_async(container.access.authenticate(token))


def refreshed(container: Container, refresh_token: str) -> Any:
    """A refresh, as the HTTP edge makes it (on an event loop)."""
    return run_async(container.sessions.rotate(refresh_token))


def shown(container: Container, account_id: Any) -> Any:
    """What `GET /api/users/me` answers for the account, through the real authentication path
    (a token of the account's, checked against the shared store) and the process's copies."""
    from uuid import uuid4

    now = container.clock.now()
    token = container.signer.issue(account_id, uuid4(), (), now, now)
    return run_async(container.profile.show(authenticated(container, token)))
