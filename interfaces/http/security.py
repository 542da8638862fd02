"""Bearer authentication as a Litestar dependency."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide

from application.access import Access
from application.ports import AccessClaims
from application.views import Client
from domain.errors import InvalidAccessToken

_MAX_TOKEN_LENGTH = 4096


def bearer_claims(request: Request[Any, Any, Any], access: NamedDependency[Access]) -> AccessClaims:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidAccessToken
    return access.authenticate(token)


def client_of(request: Request[Any, Any, Any]) -> Client:
    user_agent = request.headers.get("user-agent", "")
    printable = "".join(c for c in user_agent if c.isprintable())[:256]
    return Client(ip=request.client.host if request.client else "", user_agent=printable)


BEARER = Provide(bearer_claims, sync_to_thread=True)
