"""A read of one's own views that the projection cannot bring up to date within
READ_YOUR_WRITES_WAIT answers what it has, at once after the bound, and says how far behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from interfaces.container import Container, build
from interfaces.http.app import create_app
from interfaces.settings import Settings
from tests.conftest import FakeClock, run_projections
from tests.http.test_api import bearer, log_in, register_and_verify

WAIT = 0.3  # the setting under test: short, so the test does not sit out the 2 s default


@pytest.fixture
def stalled(settings: Settings, clock: FakeClock) -> Iterator[tuple[TestClient[Any], Container]]:
    """A server whose projections run only when the test runs them: they never catch up alone."""
    container = build(msgspec.structs.replace(settings, read_your_writes_wait=WAIT), clock=clock)
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    with TestClient(create_app(container, run_background=False)) as client:
        yield client, container
    container.close()


def test_a_read_the_projection_cannot_bring_up_to_date_answers_what_it_has(
    stalled: tuple[TestClient[Any], Container],
) -> None:
    client, container = stalled
    register_and_verify(client, container)
    first = log_in(client)
    run_projections(container)
    caught_up = client.get("/api/users/me/sessions", headers=bearer(first))
    assert caught_up.headers["Tessera-Read-Behind"] == "0"
    assert len(caught_up.json()) == 1

    second = log_in(client)  # not projected: no projector runs here
    started = time.monotonic()
    behind = client.get("/api/users/me/sessions", headers=bearer(second))
    waited = time.monotonic() - started
    assert behind.status_code == 200
    assert int(behind.headers["Tessera-Read-Behind"]) > 0
    assert len(behind.json()) == 1, "what the projection has: the first session only"
    assert WAIT <= waited < WAIT + 5, "bounded by the setting, never longer than it needs"
    activity = client.get("/api/users/me/activity", headers=bearer(second))
    assert int(activity.headers["Tessera-Read-Behind"]) > 0

    run_projections(container)
    now = client.get("/api/users/me/sessions", headers=bearer(second))
    assert now.headers["Tessera-Read-Behind"] == "0"
    assert len(now.json()) == 2


def test_another_callers_reads_do_not_wait_for_writes_that_are_not_theirs(
    stalled: tuple[TestClient[Any], Container],
) -> None:
    client, container = stalled
    register_and_verify(client, container, "ada")
    register_and_verify(client, container, "bob")
    bob = log_in(client, "bob")
    run_projections(container)
    log_in(client, "ada")  # ada's write, not projected
    answer = client.get("/api/users/me/sessions", headers=bearer(bob))
    assert answer.headers["Tessera-Read-Behind"] == "0"
