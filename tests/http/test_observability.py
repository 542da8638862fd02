"""Metrics, traces and readiness, through the real ASGI app."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.sqlite import SQLiteCursor
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from psycopg.sql import Composable

from interfaces.container import Container
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock, run_projections
from tests.http.test_api import bearer, log_in, register_and_verify

Client = TestClient[Any]


def samples(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed by prometheus_client's own parser."""
    parsed = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            parsed[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return parsed


def value(parsed: dict[Any, float], name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


def test_each_counter_moves_by_the_right_amount(
    client: Client, container: Container, clock: FakeClock
) -> None:
    before = samples(client)
    register_and_verify(client, container)
    for _ in range(5):
        client.post("/api/auth/login", json={"login": "ada", "password": "wrong password!"})
    client.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})  # locked
    clock.advance(minutes=15)
    tokens = log_in(client)
    refreshed = client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    clock.advance(seconds=container.settings.refresh_reuse_interval)  # past the reuse interval
    client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse
    other = log_in(client)
    client.put(
        "/api/users/me/password",
        headers=bearer(other),
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
    )
    client.post("/api/auth/forgot-password", json={"email": "ada@example.com"})
    client.post("/api/auth/logout", headers=bearer(other))
    run_projections(container)
    after = samples(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("tessera_registrations_total") == 1
    assert moved("tessera_email_verifications_total") == 1
    assert moved("tessera_logins_total", outcome="invalid_credentials") == 5
    assert moved("tessera_logins_total", outcome="account_locked") == 1
    assert moved("tessera_logins_total", outcome="success") == 2
    assert moved("tessera_lockouts_total") == 1
    assert moved("tessera_tokens_total", operation="issued") == 2
    assert moved("tessera_tokens_total", operation="refreshed") == 1
    assert moved("tessera_tokens_total", operation="reuse_detected") == 1
    # reuse ended one session; the password change ended the others (one event); logout one
    assert moved("tessera_tokens_total", operation="revoked") == 3
    assert moved("tessera_password_changes_total") == 1
    assert moved("tessera_password_reset_requests_total") == 1
    assert moved("tessera_event_store_append_seconds_count") > 10
    assert moved("tessera_emails_sent_total", kind="verification") == 1
    assert moved("tessera_emails_sent_total", kind="password_reset") == 1
    assert (
        moved(
            "tessera_requests_total",
            app_name="tessera",
            method="POST",
            path="/api/auth/refresh",
            status_code="200",
        )
        == 1
    )
    assert refreshed.status_code == 200


def test_one_trace_runs_from_the_http_request_to_the_mail_job(
    client: Client, container: Container, spans: Any
) -> None:
    spans.clear()
    client.post(
        "/api/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
    )
    run_projections(container)
    finished = spans.get_finished_spans()
    (request,) = [
        s for s in finished if s.name.startswith("POST /api/auth/register") and s.parent is None
    ]
    in_trace = {s.name for s in finished if s.context.trace_id == request.context.trace_id}
    assert {"Registration.register", "event_store.save", "mail.enqueue", "mail.deliver"} <= in_trace


def test_a_request_has_one_span_for_its_http_side(
    client: Client, container: Container, spans: Any
) -> None:
    """No span per ASGI message (the body received, the head and the body sent): each only
    repeated the request's own, and together they cost about a tenth of /me's CPU."""
    spans.clear()
    client.post("/api/auth/login", json={"login": "nobody", "password": "not a password"})
    finished = spans.get_finished_spans()
    (request,) = [s for s in finished if s.name.startswith("POST /api/auth/login")]
    assert request.parent is None
    assert request.attributes is not None
    assert (
        request.attributes.get(
            "http.status_code", request.attributes.get("http.response.status_code")
        )
        == 401
    )
    assert not [s.name for s in finished if s.name.endswith((" receive", " send"))]


def test_readiness_names_each_dependency(client: Client, container: Container) -> None:
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    expected = {"status": "ok", "event_store": "ok", "projections": "ok"}
    if container.settings.redis_url:
        expected["redis"] = "ok"
    assert ready.json() == expected


def test_readiness_fails_while_a_projection_lags_past_the_threshold(
    client: Client, container: Container, clock: FakeClock
) -> None:
    client.post(
        "/api/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
    )
    clock.advance(seconds=container.settings.projection_lag_threshold + 1)
    lagging = client.get("/health/ready")
    assert lagging.status_code == 503
    assert lagging.json()["projections"] == "lagging"
    run_projections(container)
    assert client.get("/health/ready").status_code == 200


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], int]]:
    """SQL queries this thread has sent to the event store and the read models (PostgreSQL or
    SQLite) since the fixture was set up, counted where the drivers run them. Not counted: the
    BEGIN the SQLite recorder sends before each query, and the empty statement with which the
    PostgreSQL pool checks a connection before lending it."""
    thread = threading.get_ident()
    sent = [0]

    def counting(execute: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            statement = args[0] if args else kwargs.get("query")
            text = statement.as_string() if isinstance(statement, Composable) else str(statement)
            if threading.get_ident() == thread and text.strip().upper() not in ("", "BEGIN"):
                sent[0] += 1
            return execute(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(psycopg.Cursor, "execute", counting(psycopg.Cursor.execute))
    monkeypatch.setattr(SQLiteCursor, "execute", counting(SQLiteCursor.execute))
    yield lambda: sent[0]


def test_a_probe_asks_the_event_store_one_question_and_reads_the_lag_from_the_reporter(
    container: Container, clock: FakeClock, statements: Callable[[], int]
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    clock.advance(seconds=container.settings.projection_lag_threshold + 1)
    before = statements()
    container.projection_lag()  # the reporter's reading, as its thread takes one every 5 s
    reading = statements() - before
    assert reading >= 2 * len(container.projectors)  # what each probe used to cost
    before = statements()
    assert container.readiness()["projections"] == "lagging"
    assert statements() - before <= 1  # the event store's ping; Redis is asked a PING
    # Caught up, but the probe says what the last reading said until the next one is taken.
    run_projections(container)
    assert container.readiness()["projections"] == "lagging"
    container.projection_lag()
    assert container.readiness()["projections"] == "ok"


def test_readiness_does_not_trust_an_old_reading(
    client: Client, container: Container, clock: FakeClock
) -> None:
    container.projection_lag()  # "ok"
    client.post(
        "/api/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
    )
    # The reporter takes a reading every 5 s: two intervals without one, and the probe measures
    # the lag itself rather than repeat an "ok" that may no longer hold.
    clock.advance(seconds=2 * container.lag_reports.interval + 1)
    assert container.readiness()["projections"] == "ok"  # 11 s behind: under the threshold
    clock.advance(seconds=container.settings.projection_lag_threshold)
    lagging = client.get("/health/ready")
    assert (lagging.status_code, lagging.json()["projections"]) == (503, "lagging")


def test_readiness_fails_when_redis_is_down(tmp_path: Path, clock: FakeClock) -> None:
    from interfaces.container import build
    from interfaces.http.app import create_app
    from interfaces.settings import load_settings
    from tests.conftest import FAST_ARGON2
    from tests.servers import start_redis

    server = start_redis()
    container = build(
        load_settings({**FAST_ARGON2, "DATA_DIR": str(tmp_path), "REDIS_URL": server.url}),
        clock=clock,
    )
    with TestClient(create_app(container, run_background=False)) as client:
        assert client.get("/health/ready").status_code == 200
        server.stop()
        down = client.get("/health/ready")
        assert down.status_code == 503
        assert down.json()["redis"] == "unreachable"
        assert client.get("/health/live").status_code == 200


def test_every_response_names_its_request(client: Client) -> None:
    answer = client.get("/health/live", headers={"X-Request-ID": "abc-12345678"})
    assert answer.headers["x-request-id"] == "abc-12345678"
    hostile = client.get("/health/live", headers={"X-Request-ID": "bad id\nwith newline"})
    assert hostile.headers["x-request-id"] != "bad id\nwith newline"
