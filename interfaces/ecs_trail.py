"""The exported audit trail as Elastic Common Schema documents, one per line, still verifiable.

Each document carries everything the JSON Lines export's line holds, in ECS places where ECS has
one (`@timestamp`, `event.sequence` = the store position, `event.action` = the event class,
`user.id`, `client.ip`, `user_agent.original`) and under `tessera.*` where it has none, plus the
line's chain: `event.hash` (the line's hash) and `tessera.trail.prev`. So the hash chain is the
very chain of `--format jsonl`: `trail_line` turns a document back into its JSON Lines line, and
`tessera audit verify` reads either format, or a copy fetched back from Elasticsearch, whatever
fields a shipper added, as long as the documents are in `event.sequence` order.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from interfaces.ecs import ECS_VERSION, SERVICE, event_fields, service_version

DATASET = "tessera.audit"


def document(line: str) -> str:
    """The ECS document (one line of JSON) for one line of the JSON Lines export."""
    fields = json.loads(line)
    event = event_fields(fields["type"], fields["outcome"])
    event.update(sequence=fields["position"], hash=fields["hash"], dataset=DATASET, module=SERVICE)
    doc: dict[str, Any] = {
        "@timestamp": fields["time"],
        "ecs": {"version": ECS_VERSION},
        "message": fields["type"],
        "event": event,
        "service": {"name": SERVICE, "version": service_version()},
        "tessera": {
            "aggregate": {
                "type": fields["aggregate"],
                "id": fields["aggregate_id"],
                "version": fields["version"],
            },
            "outcome": fields["outcome"],
            "details": fields["details"],
            "trail": {"prev": fields["prev"]},
        },
    }
    for name in ("sealed", "salts"):
        if fields.get(name):
            # What the line's hash binds in place of its personal values (trail_export).
            doc["tessera"]["trail"][name] = fields[name]
    if fields["account_id"] is not None:
        doc["user"] = {"id": fields["account_id"]}
    if fields["session_id"] is not None:
        doc["tessera"]["session"] = {"id": fields["session_id"]}
    if fields["ip"]:
        # ECS: the raw address in client.address, and in client.ip only when it is one (an
        # index maps client.ip as an IP address and would refuse the document otherwise).
        doc["client"] = client_fields(fields["ip"])
    if fields["user_agent"]:
        doc["user_agent"] = {"original": fields["user_agent"]}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def client_fields(address: str) -> dict[str, str]:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {"address": address}
    return {"address": address, "ip": address}


def is_document(fields: dict[str, Any]) -> bool:
    return isinstance(fields.get("event"), dict) and "ecs" in fields


def trail_line(doc: dict[str, Any]) -> dict[str, Any]:
    """The JSON Lines line (its fields, `prev` and `hash` included) a document was made from.
    A missing field becomes None, so a document that lost one fails its hash in `verify`; so
    does one whose ECS fields (event.outcome, client.ip, ...) say other than the line they are
    made from, since a search in Kibana reads those. Fields a shipper added are ignored."""
    fields = _fields(doc)
    expected = _flat(json.loads(document(json.dumps(fields))))
    given = _flat(doc)
    if any(given.get(name) != value for name, value in expected.items() if name not in _FREE):
        fields["hash"] = ""  # verify then names this line as edited
    return fields


# Not part of what the line says: the version of the service that wrote the document.
_FREE = frozenset({"service.version"})


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _fields(doc: dict[str, Any]) -> dict[str, Any]:
    event = doc.get("event", {})
    tessera = doc.get("tessera", {})
    aggregate = tessera.get("aggregate", {})
    fields = {
        "position": event.get("sequence"),
        "time": doc.get("@timestamp"),
        "type": event.get("action"),
        "aggregate": aggregate.get("type"),
        "aggregate_id": aggregate.get("id"),
        "version": aggregate.get("version"),
        "account_id": doc.get("user", {}).get("id"),
        "session_id": tessera.get("session", {}).get("id"),
        "ip": doc.get("client", {}).get("address", ""),
        "user_agent": doc.get("user_agent", {}).get("original", ""),
        "outcome": tessera.get("outcome"),
        "details": tessera.get("details"),
        "prev": tessera.get("trail", {}).get("prev"),
        "hash": event.get("hash"),
    }
    for name in ("sealed", "salts"):
        found = tessera.get("trail", {}).get(name)
        if found is not None:
            fields[name] = found
    return fields
