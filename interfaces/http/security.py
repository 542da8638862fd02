"""Bearer authentication as a Litestar dependency."""

from __future__ import annotations

import ipaddress
from typing import Any

from litestar import Request
from litestar.di import NamedDependency, Provide

from application.origin import current_caller
from application.ports import Caller
from application.sessions.access import Access
from application.views import Client
from domain.errors import InvalidAccessToken
from interfaces.logs import current_request

_MAX_TOKEN_LENGTH = 4096


async def bearer_claims(request: Request[Any, Any, Any], access: NamedDependency[Access]) -> Caller:
    """On the event loop: a signature check and one async look-up, no thread hop."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidAccessToken
    claims = await access.authenticate(token)
    attribute_to(claims)
    return claims


def attribute_to(claims: Caller) -> None:
    """The events this request records, and its log line, name the account that asked."""
    slot = current_caller.get()
    if slot is not None:
        slot.account_id = claims.account_id
    info = current_request.get()
    if info is not None:
        info.account_id = str(claims.account_id)


class ClientAddress:
    """Who is asking. X-Forwarded-For is believed only when the peer is a trusted proxy, and
    then only up to the first address no trusted proxy vouches for: anyone can write the
    header, so trusting it blindly would let a client pick its own rate-limit key."""

    def __init__(self, trusted_proxies: str) -> None:
        self._trusted = [
            ipaddress.ip_network(entry.strip(), strict=False)
            for entry in trusted_proxies.split(",")
            if entry.strip()
        ]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def of(self, request: Request[Any, Any, Any]) -> Client:
        ip = request.client.host if request.client else ""
        if self._trusted and self._is_trusted(ip):
            hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
            for hop in reversed([h for h in hops if h]):
                ip = hop
                if not self._is_trusted(hop):
                    break
        user_agent = request.headers.get("user-agent", "")
        printable = "".join(c for c in user_agent if c.isprintable())[:256]
        return Client(ip=ip[:64], user_agent=printable)


BEARER = Provide(bearer_claims)
