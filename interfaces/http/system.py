"""Unauthenticated system endpoints: signing keys and health."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from application.event_log import EventLog
from infrastructure.signing import Ed25519Signer


@get("/.well-known/jwks.json", tags=["system"], cache=False)
async def jwks(signer: NamedDependency[Ed25519Signer]) -> dict[str, Any]:
    return signer.jwks()


@get("/health/live", tags=["system"])
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", tags=["system"], sync_to_thread=True)
def ready(log: NamedDependency[EventLog]) -> Response[dict[str, str]]:
    try:
        log.recorder.max_notification_id()
    except Exception:
        return Response(
            {"status": "unavailable", "event_store": "unreachable"},
            status_code=HTTP_503_SERVICE_UNAVAILABLE,
        )
    return Response({"status": "ok", "event_store": "ok"}, status_code=HTTP_200_OK)
