"""Cross-origin calls to the JSON API (CORS_ALLOWED_ORIGINS), for browser apps served elsewhere.

Only `/api/*`: the pages are this site's own (their forms are refused from any other origin),
and what other services read (JWKS, health, metrics) is not called from a browser page. No
credentials, ever: the API takes a Bearer token, which a script sends itself, and answering
`Access-Control-Allow-Credentials` would let a listed origin's page ride this browser's cookies.
Litestar's own CORS middleware applies to the whole app, so it is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

PREFIX = "/api/"
METHODS = "DELETE, GET, PATCH, POST, PUT"
# What a client sends: its token, its JSON, and its own request id for the logs.
REQUEST_HEADERS = "Authorization, Content-Type, X-Request-Id"
# What a client reads besides the CORS-safelisted ones: why to wait, why a token is refused,
# whether a read lags its own writes, which request the logs call it, an export's file name.
EXPOSED_HEADERS = (
    "Content-Disposition, Retry-After, Tessera-Read-Behind, WWW-Authenticate, X-Request-Id"
)
MAX_AGE = "600"  # seconds a browser may keep a preflight's answer


def cross_origin(origins: Collection[str]) -> Callable[[ASGIApp], ASGIApp] | None:
    """An app middleware answering CORS for `origins` (exact, as browsers send Origin), or
    None when there are none: then no response carries any CORS header."""
    allowed = frozenset(origins)
    if not allowed:
        return None

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or not scope["path"].startswith(PREFIX):
                await app(scope, receive, send)
                return
            headers = Headers.from_scope(scope)
            origin = headers.get("origin")
            listed = origin in allowed
            if (
                listed
                and scope["method"] == "OPTIONS"
                and "access-control-request-method" in headers
            ):
                await _preflight(origin or "", send)
                return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    response = MutableScopeHeaders.from_message(message)
                    # The answer differs by Origin: a shared cache must not hand one to another.
                    response.add("vary", "Origin")
                    if listed:
                        response["access-control-allow-origin"] = origin or ""
                        response["access-control-expose-headers"] = EXPOSED_HEADERS
                await send(message)

            await app(scope, receive, send_with_headers)

        return middleware

    return wrap


async def _preflight(origin: str, send: Send) -> None:
    """The browser asks before a call with a token or a JSON body; nothing is run for it."""
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 204,
        "headers": [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", METHODS.encode()),
            (b"access-control-allow-headers", REQUEST_HEADERS.encode()),
            (b"access-control-max-age", MAX_AGE.encode()),
            (b"vary", b"Origin"),
        ],
    }
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(start)
    await send(body)
