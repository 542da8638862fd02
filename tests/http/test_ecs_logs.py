"""ECS log lines from the real ASGI app, in this process, so they can be held against the spans
OpenTelemetry's in-memory exporter recorded; and the older json shape, still there for a release."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from interfaces.container import Container
from interfaces.ecs_logs import EcsFormatter
from interfaces.logs import JsonFormatter
from tests.conftest import run_projections
from tests.ecs_schema import flatten, problems
from tests.http.test_api import bearer, log_in, register_and_verify

Client = TestClient[Any]
LOGGERS = ("tessera.access", "tessera.security")
sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


def capture(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


@pytest.fixture
def ecs_lines() -> Iterator[io.StringIO]:
    yield from capture(EcsFormatter("tessera"))


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    yield from capture(JsonFormatter())


def read(out: io.StringIO) -> list[dict[str, Any]]:
    return [flatten(json.loads(line)) for line in out.getvalue().splitlines()]


@sqlite_only
def test_a_log_line_names_the_trace_and_the_request_span_the_exporter_recorded(
    client: Client, container: Container, spans: Any, ecs_lines: io.StringIO
) -> None:
    register_and_verify(client, container)
    spans.clear()
    ecs_lines.truncate(0)
    ecs_lines.seek(0)
    log_in(client)

    finished = spans.get_finished_spans()
    (server,) = [s for s in finished if s.name.startswith("POST /api/auth/login") and not s.parent]
    trace_id = format(server.context.trace_id, "032x")
    in_trace = {
        format(s.context.span_id, "016x")
        for s in finished
        if s.context.trace_id == server.context.trace_id
    }
    lines = read(ecs_lines)
    (access,) = [line for line in lines if line["log.logger"] == "tessera.access"]
    (started,) = [line for line in lines if line.get("event.action") == "SessionStarted"]
    for line in (access, started):
        assert problems(line) == []
        assert line["trace.id"] == trace_id
        assert line["transaction.id"] == format(server.context.span_id, "016x")
        assert line["span.id"] in in_trace
        assert line["http.request.id"] == access["http.request.id"]
    # The save's line is logged inside a use case's span, not the request's.
    assert started["span.id"] != access["transaction.id"]
    assert started["event.category"] == ["authentication", "session"]


@sqlite_only
def test_an_admins_change_is_logged_with_the_changed_accounts_id(
    client: Client, container: Container, ecs_lines: io.StringIO
) -> None:
    ada = register_and_verify(client, container)
    register_and_verify(client, container, who="root")
    container.administration.grant_role("root", "admin", operator="test")
    admin = log_in(client, "root")
    locked = client.post(f"/api/admin/accounts/{ada['id']}/lock", headers=bearer(admin), json={})
    assert locked.status_code < 300, locked.text

    (line,) = [line for line in read(ecs_lines) if line.get("event.action") == "AccountLocked"]
    assert line["user.id"] == ada["id"]
    access = [line for line in read(ecs_lines) if line.get("url.path", "").endswith("/lock")]
    assert access[0]["user.id"] != ada["id"]  # the request's own line names who asked


@sqlite_only
def test_a_client_registration_is_logged_with_the_client_id_and_never_its_secret(
    client: Client, container: Container, ecs_lines: io.StringIO
) -> None:
    register_and_verify(client, container, who="root")
    container.administration.grant_role("root", "admin", operator="test")
    admin = bearer(log_in(client, "root"))
    body = {"name": "Wiki", "redirect_uris": ["https://wiki.example/cb"]}
    made = client.post("/api/admin/clients", headers=admin, json=body).json()
    rotated = client.post(f"/api/admin/clients/{made['client_id']}/secret", headers=admin).json()

    lines = read(ecs_lines)
    (registered,) = [line for line in lines if line.get("event.action") == "ClientRegistered"]
    assert registered["tessera.client.id"] == made["client_id"]
    assert registered["event.category"] == ["iam"] and registered["event.type"] == ["creation"]
    assert [line for line in lines if line.get("event.action") == "ClientSecretRotated"]
    everything = ecs_lines.getvalue()
    assert made["client_secret"] not in everything
    assert rotated["client_secret"] not in everything


def test_a_webhook_endpoint_is_logged_and_in_the_trail_and_never_its_secret(
    client: Client, container: Container, ecs_lines: io.StringIO
) -> None:
    register_and_verify(client, container, who="root")
    container.administration.grant_role("root", "admin", operator="test")
    container.administration.grant_role("root", "auditor", operator="test")
    admin = bearer(log_in(client, "root"))
    body = {"url": "https://crm.example/h", "events": ["account.erased"], "include_personal": True}
    made = client.post("/api/admin/webhooks", headers=admin, json=body).json()
    rotated = client.post(f"/api/admin/webhooks/{made['id']}/secret", headers=admin).json()

    lines = read(ecs_lines)
    (created,) = [line for line in lines if line.get("event.action") == "EndpointCreated"]
    assert created["tessera.webhook.id"] == made["id"]
    assert created["event.category"] == ["configuration"]
    assert [line for line in lines if line.get("event.action") == "EndpointSecretRotated"]
    everything = ecs_lines.getvalue()
    assert made["secret"] not in everything and rotated["secret"] not in everything
    run_projections(container)
    trail = client.get("/api/audit/events?type=EndpointCreated", headers=admin)
    assert trail.status_code == 200, trail.text
    (entry,) = trail.json()["entries"]
    assert entry["details"]["settings"]["include_personal"] is True
    assert entry["details"]["operator"].startswith("account:")
    assert "whsec_" not in trail.text and "sealed" not in trail.text


@sqlite_only
def test_log_format_json_keeps_the_older_shape(
    client: Client, container: Container, json_lines: io.StringIO
) -> None:
    register_and_verify(client, container)
    client.post("/api/auth/login", json={"login": "ada", "password": "wrong password!"})
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    refused = [line for line in lines if line.get("route") == "/api/auth/login"][-1]
    assert set(refused) >= {"time", "level", "logger", "message", "request_id", "method"}
    assert (refused["status"], refused["outcome"]) == (401, "invalid_credentials")
    assert "transaction_id" not in refused
    assert "@timestamp: missing" in problems(refused)


def test_the_ecs_check_refuses_wrong_types_and_unknown_fields() -> None:
    line = {
        "@timestamp": "2026-01-31T12:00:00.000",  # no zone
        "ecs.version": "8.11.0",
        "log": {"level": "info", "logger": "tessera.access"},
        "message": "request",
        "service": {"name": "tessera"},
        "http": {"response": {"status_code": "200"}},
        "client": {"ip": "testclient"},
        "event": {"category": ["authentication"], "type": ["access"], "outcome": "ok"},
        "status": 200,
    }
    found = problems(line)
    assert len(found) == 6, found
    assert problems({**line, "@timestamp": "2026-01-31T12:00:00.000Z"}) != found


def test_every_account_session_client_and_endpoint_event_has_its_ecs_categories() -> None:
    from eventsourcing.domain import DomainEvent

    from domain.account import Account
    from domain.client import OAuthClient
    from domain.session import Session
    from domain.webhook import WebhookEndpoint
    from interfaces.ecs import CATEGORIES, event_fields

    recorded = {
        name
        for aggregate in (Account, Session, OAuthClient, WebhookEndpoint)
        for name, value in vars(aggregate).items()
        if isinstance(value, type) and issubclass(value, DomainEvent)
    } - {"Created", "Event"}  # the library's base classes, never recorded as such
    assert set(CATEGORIES) == recorded
    for name in recorded:
        fields = {"event": event_fields(name, "success"), "ecs": {"version": "8.11.0"}}
        assert problems(fields, required=("event.category", "event.type")) == [], name
