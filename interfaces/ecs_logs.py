"""Log lines in the Elastic Common Schema, written by Elastic's own formatter (ecs-logging).

What this adds to the formatter's lines is the request a line belongs to (http.request.id,
url.path = the route template, client.ip, user.id), the trace it ran in (trace.id, span.id, and
transaction.id = the request's server span, which is how Kibana links a line to its trace), and
the access line's HTTP fields. What may be logged at all is decided in logs.py and at the call
sites; nothing here reads a body, a header or a query string.
"""

from __future__ import annotations

import logging
from typing import Any

import ecs_logging
from opentelemetry import trace

from application.origin import current_client
from interfaces.ecs import ECS_VERSION, service_version
from interfaces.ecs_trail import client_fields
from interfaces.logs import current_request

ACCESS_LOGGER = "tessera.access"


class EcsFormatter(ecs_logging.StdlibFormatter):
    def __init__(self, service_name: str, dataset: str = "tessera.log") -> None:
        super().__init__(
            extra={
                "service.name": service_name,
                "service.version": service_version(),
                "event.dataset": dataset,
            },
            # log.original repeats `message`; color_message is uvicorn's ANSI copy of it.
            exclude_fields=("log.original", "color_message"),
        )

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        result: dict[str, Any] = super().format_to_ecs(record)
        # The formatter's own default is the schema version it was written for; the fields
        # below come from a later one, which is the version these lines conform to.
        result["ecs.version"] = ECS_VERSION
        if record.name == ACCESS_LOGGER:
            _access_fields(result)
        request = current_request.get()
        if request is not None:
            _merge(result, "http", {"request": {"id": request.request_id}})
            if request.route:
                _merge(result, "url", {"path": request.route})
            if request.account_id and "id" not in result.get("user", {}):
                # A line about another account (an admin's change) keeps that account's id.
                _merge(result, "user", {"id": request.account_id})
            if request.transaction_id:
                _merge(result, "transaction", {"id": request.transaction_id})
        client = current_client.get()
        if client is not None and client.ip:
            _merge(result, "client", client_fields(client.ip))
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            _merge(result, "trace", {"id": format(span.trace_id, "032x")})
            _merge(result, "span", {"id": format(span.span_id, "016x")})
        return result


def _access_fields(result: dict[str, Any]) -> None:
    """The access line's fields (request_log.py passes them by their short names, which the
    JSON shape prints as they are) in their ECS places."""
    method = result.pop("method", None)
    status = result.pop("status", None)
    duration_ms = result.pop("duration_ms", None)
    if method:
        _merge(result, "http", {"request": {"method": method}})
    if isinstance(status, int):
        _merge(result, "http", {"response": {"status_code": status}})
    event: dict[str, Any] = {"kind": "event", "category": ["web"], "type": ["access"]}
    if isinstance(duration_ms, int | float):
        event["duration"] = round(duration_ms * 1_000_000)  # ECS: nanoseconds
    request = current_request.get()
    if isinstance(status, int):
        event["outcome"] = "success" if status < 400 else "failure"
        if request is not None and request.outcome and status >= 400:
            event["reason"] = request.outcome  # the problem's stable code
    _merge(result, "event", event)


def _merge(result: dict[str, Any], key: str, value: dict[str, Any]) -> None:
    existing = result.get(key)
    if isinstance(existing, dict):
        for name, inner in value.items():
            if isinstance(inner, dict) and isinstance(existing.get(name), dict):
                _merge(existing, name, inner)
            else:
                existing[name] = inner
    else:
        result[key] = value
