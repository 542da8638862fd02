"""On PostgreSQL a read that waits for its caller's own writes wakes the projector in whichever
process runs it (LISTEN/NOTIFY), instead of waiting out that projector's poll interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from application.views import Client
from interfaces.container import Container, build
from interfaces.settings import Settings, load_settings
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FAST_ARGON2, FakeClock, authenticated
from tests.servers import PostgresCluster

# The setting under test is the wake-up: a poll interval far beyond the read's 2 s bound, so
# only a wake-up can bring the projection up to date in time.
LONG_POLL = 60.0


@pytest.fixture
def pg_settings(tmp_path: Path, postgres: PostgresCluster, redis_url: str) -> Settings:
    return load_settings(
        {
            "DATA_DIR": str(tmp_path / "var"),
            "DATABASE_URL": postgres.new_database(),
            "REDIS_URL": redis_url,
            "REQUIRE_VERIFIED_EMAIL": "false",  # no mail needs to flow here
            **FAST_ARGON2,
        }
    )


@pytest.fixture
def api_and_projector(pg_settings: Settings) -> Iterator[tuple[Container, Container]]:
    clock = FakeClock()
    api, projector = build(pg_settings, clock=clock), build(pg_settings, clock=clock)
    yield api, projector
    projector.close()
    api.close()


def test_a_read_wakes_the_projector_of_another_process(
    api_and_projector: tuple[Container, Container],
) -> None:
    api, other = api_and_projector
    stop = threading.Event()
    sessions = other.projector("sessions")
    assert other.wakeups is not None
    other.wakeups.listen([sessions], stop)
    api.registration.register("ada@example.com", "ada", PASSWORD)
    thread = threading.Thread(target=sessions.run_until, args=(stop, LONG_POLL), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while sessions.position < (api.log.recorder.max_notification_id() or 0):
            assert time.monotonic() < deadline, "the projector never caught up at its start"
            time.sleep(0.05)
        time.sleep(0.5)  # now in its long poll
        for _ in range(3):
            tokens = api.login.log_in("ada", PASSWORD, Client())
            caller = authenticated(api, tokens.access_token)  # type: ignore[union-attr]
            assert caller.written > sessions.position
            assert api.read_side.caught_up("sessions", caller.written) == 0
    finally:
        stop.set()
        sessions.nudge()  # out of its long poll, to see the stop
        thread.join(timeout=10)
