"""Unauthenticated system endpoints: signing keys, health, and what answers at `/`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from infrastructure.signing import Ed25519Signer


@get("/.well-known/jwks.json", tags=["system"], cache=False)
async def jwks(signer: NamedDependency[Ed25519Signer]) -> dict[str, Any]:
    return signer.jwks()


@get("/", include_in_schema=False)
async def home() -> dict[str, str]:
    """Without the pages, `/` names where to read on: a person (or a client's developer) lands
    here first, and a bare 404 tells them nothing."""
    return {
        "service": "tessera",
        "api_docs": "/schema",
        "openapi": "/schema/openapi.json",
        "health": "/health/ready",
    }


@get("/health/live", tags=["system"])
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/health/ready",
    tags=["system"],
    sync_to_thread=True,
    responses={
        503: ResponseSpec(
            dict[str, str],
            description="A dependency did not answer: each one named, with its state",
        )
    },
)
def ready(readiness: NamedDependency[Callable[[], dict[str, str]]]) -> Response[dict[str, str]]:
    checks = readiness()
    ok = all(state == "ok" for state in checks.values())
    return Response(
        {"status": "ok" if ok else "unavailable", **checks},
        status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
    )
