"""The part of the Elastic Common Schema this service writes, and a check of a document against it.

Types and allowed values are ECS 8.11's field reference (elastic.co/guide/en/ecs/8.11): the
Elasticsearch type of each field, the allowed values of the categorisation fields and, for each
event.category, the event.type values ECS expects with it. A field outside ECS must be under the
service's own `tessera.` namespace, as ECS asks of custom fields.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

FIELD_TYPES: dict[str, str] = {
    "@timestamp": "date",
    "message": "match_only_text",
    "ecs.version": "keyword",
    "log.level": "keyword",
    "log.logger": "keyword",
    "log.origin.function": "keyword",
    "log.origin.file.name": "keyword",
    "log.origin.file.line": "long",
    "process.pid": "long",
    "process.name": "keyword",
    "process.thread.id": "long",
    "process.thread.name": "keyword",
    "error.type": "keyword",
    "error.message": "match_only_text",
    "error.stack_trace": "wildcard",
    "service.name": "keyword",
    "service.version": "keyword",
    "event.kind": "keyword",
    "event.category": "keyword",
    "event.type": "keyword",
    "event.action": "keyword",
    "event.outcome": "keyword",
    "event.reason": "keyword",
    "event.dataset": "keyword",
    "event.module": "keyword",
    "event.hash": "keyword",
    "event.sequence": "long",
    "event.duration": "long",
    "http.request.id": "keyword",
    "http.request.method": "keyword",
    "http.response.status_code": "long",
    "url.path": "wildcard",
    "client.address": "keyword",
    "client.ip": "ip",
    "user.id": "keyword",
    "user_agent.original": "keyword",
    "trace.id": "keyword",
    "span.id": "keyword",
    "transaction.id": "keyword",
}
# ECS fields that hold an array of keywords.
ARRAYS = frozenset({"event.category", "event.type"})
# Custom fields whose value is an object as a whole (mapped `flattened`), not walked into.
OBJECTS = frozenset({"tessera.details", "tessera.trail.sealed", "tessera.trail.salts"})

EVENT_KINDS = frozenset(
    {"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}
)
EVENT_OUTCOMES = frozenset({"failure", "success", "unknown"})
# event.category -> the event.type values ECS expects with it (the ones this service may use).
EXPECTED_TYPES: dict[str, frozenset[str]] = {
    "authentication": frozenset({"start", "end", "info"}),
    "configuration": frozenset({"access", "change", "creation", "deletion", "info"}),
    "iam": frozenset({"admin", "change", "creation", "deletion", "group", "info", "user"}),
    "session": frozenset({"start", "end", "info"}),
    "web": frozenset({"access", "error", "info"}),
}
LOG_REQUIRED = ("@timestamp", "ecs.version", "log.level", "log.logger", "message", "service.name")
TRAIL_REQUIRED = (
    "@timestamp",
    "ecs.version",
    "event.kind",
    "event.category",
    "event.type",
    "event.action",
    "event.outcome",
    "event.sequence",
    "event.hash",
)


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted names to values, whether the document nests objects or dots its keys (as
    Elasticsearch reads both)."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in OBJECTS:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _type_problem(name: str, kind: str, value: Any) -> str | None:
    if kind == "date":
        try:
            instant = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            instant = None
        if instant is None or instant.tzinfo is None:
            return f"{name}: {value!r} is not an ISO 8601 instant with a zone"
        return None
    if kind == "long":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{name}: {value!r} is not a whole number"
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except (TypeError, ValueError):
            return f"{name}: {value!r} is not an IP address"
        return None
    return None if isinstance(value, str) and value else f"{name}: {value!r} is not a string"


def problems(document: dict[str, Any], required: tuple[str, ...] = LOG_REQUIRED) -> list[str]:
    """What makes `document` not valid ECS (empty when it is)."""
    flat = flatten(document)
    found = [f"{name}: missing" for name in required if name not in flat]
    for name, value in flat.items():
        kind = FIELD_TYPES.get(name)
        if kind is None:
            if not name.startswith("tessera."):
                found.append(f"{name}: not an ECS field, nor under tessera.")
            continue
        if name in ARRAYS:
            if not isinstance(value, list) or not value:
                found.append(f"{name}: {value!r} is not a non-empty array")
                continue
            found += [p for item in value if (p := _type_problem(name, kind, item))]
        elif (problem := _type_problem(name, kind, value)) is not None:
            found.append(problem)
    if "event.kind" in flat and flat["event.kind"] not in EVENT_KINDS:
        found.append(f"event.kind: {flat['event.kind']!r} is not an allowed value")
    if "event.outcome" in flat and flat["event.outcome"] not in EVENT_OUTCOMES:
        found.append(f"event.outcome: {flat['event.outcome']!r} is not an allowed value")
    categories = flat.get("event.category", [])
    types = set(flat.get("event.type", []))
    for category in categories:
        if category not in EXPECTED_TYPES:
            found.append(f"event.category: {category!r} is not one this check knows")
        elif not types & EXPECTED_TYPES[category]:
            found.append(f"event.type: {sorted(types)} fits no type ECS expects for {category}")
    return found
