"""One log line per recorded account, session or client fact, categorised as ECS says (an observer of
the EventLog, like the metrics): Kibana sees sign-ins, lockouts, resets, MFA changes and
refresh-token reuse as they are recorded, without waiting for a trail export.

A line names the fact, its outcome, the account's id and the session's; never the event's details (an
address, a name), which stay in the event store, where erasure can reach them.
"""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.domain import DomainEventProtocol

from application.audit.trail import is_trail_event, trail_entry
from interfaces.ecs import event_fields

log = logging.getLogger("tessera.security")


class SecurityLog:
    def saved(self, events: list[DomainEventProtocol[Any]], seconds: float) -> None:
        for event in events:
            if not is_trail_event(event):
                continue
            entry = trail_entry(event, None)
            fields: dict[str, Any] = {"event": event_fields(entry.type, entry.outcome)}
            if entry.account_id is not None:
                fields["user"] = {"id": str(entry.account_id)}
            if entry.session_id is not None:
                # A refresh or a reuse names no account: its session ties it to the sign-in.
                fields["tessera"] = {"session": {"id": str(entry.session_id)}}
            if entry.aggregate == "OAuthClient":
                fields["tessera"] = {"client": {"id": str(entry.aggregate_id)}}
            if entry.aggregate == "WebhookEndpoint":
                fields["tessera"] = {"webhook": {"id": str(entry.aggregate_id)}}
            log.info(entry.type, extra=fields)
