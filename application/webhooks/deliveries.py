"""What admins see of an endpoint's deliveries: each try's outcome, never a body."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from application.webhooks.endpoints import WebhookEndpoints
from application.webhooks.records import WebhookLedger

MAX_DELIVERIES = 500


@dataclass(frozen=True)
class DeliveryView:
    id: str  # the webhook-id
    type: str
    account_id: str
    position: int  # of its event in the log
    replay_id: str | None
    status: str  # queued, sending, sent, dead, dropped
    attempts: int
    last_status: int | None  # the receiver's last answer's status code; None: no answer
    last_error: str | None
    next_try_at: datetime | None  # while queued
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> DeliveryView:
        return cls(
            id=str(row["id"]),
            type=str(row["type"]),
            account_id=str(row["account_id"]),
            position=int(row["position"]),
            replay_id=None if row["replay_id"] is None else str(row["replay_id"]),
            status=str(row["status"]),
            attempts=int(row["attempts"]),
            last_status=None if row["last_status"] is None else int(row["last_status"]),
            last_error=row["last_error"],
            next_try_at=row["next_try_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


class Deliveries:
    def __init__(self, endpoints: WebhookEndpoints, ledger: WebhookLedger) -> None:
        self._endpoints = endpoints
        self._ledger = ledger

    def of(self, endpoint_id: str, limit: int = 100) -> list[DeliveryView]:
        """The endpoint's latest deliveries, newest first."""
        endpoint = self._endpoints.find(endpoint_id)
        rows = self._ledger.of_endpoint(str(endpoint.id), min(limit, MAX_DELIVERIES))
        return [DeliveryView.of(row) for row in rows]
