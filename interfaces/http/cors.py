"""Cross-origin calls from browser apps served elsewhere (CORS): one middleware, one table of
which paths may be called from which origins.

- `/api/*`: the origins of CORS_ALLOWED_ORIGINS, first-party apps with a Bearer token.
- The OpenID Provider's token, userinfo and revocation endpoints: the web origins of the live
  clients (a single-page app, such as an oidc-client-ts client, signs in through them). A
  preflight names no client, so any live client's origin passes it; the answer itself is
  readable only from the origins of the client it is for (the one that authenticated, or the
  one the access token was issued to), which the endpoint names with `for_client`.
- Discovery and the JWKS: any origin (`*`), as they are public documents.

Nothing else: the pages are this site's own (their forms are refused from any other origin), and
what other services read (health, metrics, introspection) is not called from a browser page.
No credentials, ever: each of these takes a Bearer token or a client's form, which a script
sends itself, and answering `Access-Control-Allow-Credentials` would let an allowed origin's
page ride this browser's cookies. Litestar's own CORS middleware applies one list to the whole
app, so it is not used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

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

API_PREFIX = "/api/"
PROVIDER_ENDPOINTS = frozenset({"/oauth2/token", "/oauth2/userinfo", "/oauth2/revoke"})
PROVIDER_DOCUMENTS = frozenset({"/.well-known/openid-configuration", "/.well-known/jwks.json"})
ANY_ORIGIN = "*"
MAX_AGE = "600"  # seconds a browser may keep a preflight's answer

Allows = Callable[[str], Awaitable[bool]]
AllowsFor = Callable[[str, str], Awaitable[bool]]  # (client_id, origin)
_CLIENT = "cors_client_id"  # the scope's state: which client an answer is for


def for_client(request: Any, client_id: str) -> None:
    """Says which client the answer is for: only that client's web origins may read it."""
    request.scope.setdefault("state", {})[_CLIENT] = client_id


@dataclass(frozen=True)
class CorsRule:
    """How the paths it covers answer a cross-origin call."""

    covers: Callable[[str], bool]
    # Whether an Origin may call; None: any may, answered `*` (a public document).
    allows: Allows | None
    methods: str
    request_headers: str
    exposed_headers: str
    # Whether an Origin may read an answer for this client (named by the endpoint); None: the
    # rule's `allows` is the whole answer.
    allows_for: AllowsFor | None = None


def _listed(origins: Collection[str]) -> Allows:
    allowed = frozenset(origins)

    async def allows(origin: str) -> bool:
        return origin in allowed

    return allows


def rules(
    api_origins: Collection[str], client_origins: Allows, one_client_origins: AllowsFor
) -> list[CorsRule]:
    """The table: the first rule that covers a path is its rule. No API origins listed: the
    API answers no CORS header at all."""
    api = [
        CorsRule(
            covers=lambda path: path.startswith(API_PREFIX),
            allows=_listed(api_origins),
            methods="DELETE, GET, PATCH, POST, PUT",
            # A client's token, its JSON, and its own request id for the logs.
            request_headers="Authorization, Content-Type, X-Request-Id",
            # Why to wait, why a token is refused, whether a read lags its own writes, which
            # request the logs call it, an export's file name.
            exposed_headers=(
                "Content-Disposition, Retry-After, Tessera-Read-Behind, WWW-Authenticate, "
                "X-Request-Id"
            ),
        )
    ]
    return [
        *(api if api_origins else []),
        CorsRule(
            covers=PROVIDER_ENDPOINTS.__contains__,
            allows=client_origins,
            methods="GET, POST",
            # client_secret_basic or a Bearer token, and the form.
            request_headers="Authorization, Content-Type",
            # Why a token is refused (RFC 6750, 3), why to wait.
            exposed_headers="Retry-After, WWW-Authenticate, X-Request-Id",
            allows_for=one_client_origins,
        ),
        CorsRule(
            covers=PROVIDER_DOCUMENTS.__contains__,
            allows=None,
            methods="GET",
            request_headers="",
            exposed_headers="",
        ),
    ]


def cross_origin(table: Sequence[CorsRule]) -> Callable[[ASGIApp], ASGIApp]:
    """An app middleware answering CORS by `table`; a path no rule covers gets no CORS header."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            rule = next((r for r in table if r.covers(scope["path"])), None)
            if rule is None:
                await app(scope, receive, send)
                return
            headers = Headers.from_scope(scope)
            origin = headers.get("origin")
            allowed = await _allowed_origin(rule, origin)
            if (
                allowed is not None
                and scope["method"] == "OPTIONS"
                and "access-control-request-method" in headers
            ):
                await _preflight(rule, allowed, send)
                return

            async def send_with_headers(message: Message) -> None:
                nonlocal allowed
                if message["type"] == "http.response.start":
                    response = MutableScopeHeaders.from_message(message)
                    if rule.allows is not None:
                        # The answer differs by Origin: a shared cache must not hand one to
                        # another.
                        response.add("vary", "Origin")
                    client_id = scope.get("state", {}).get(_CLIENT)
                    if allowed is not None and rule.allows_for is not None and client_id:
                        allowed = allowed if await rule.allows_for(client_id, allowed) else None
                    if allowed is not None:
                        response["access-control-allow-origin"] = allowed
                        if rule.exposed_headers:
                            response["access-control-expose-headers"] = rule.exposed_headers
                await send(message)

            await app(scope, receive, send_with_headers)

        return middleware

    return wrap


async def _allowed_origin(rule: CorsRule, origin: str | None) -> str | None:
    """What Access-Control-Allow-Origin answers, or None for no CORS header at all."""
    if origin is None:
        return None
    if rule.allows is None:
        return ANY_ORIGIN
    return origin if await rule.allows(origin) else None


async def _preflight(rule: CorsRule, allowed: str, send: Send) -> None:
    """The browser asks before a call with a token or a JSON body; nothing is run for it."""
    headers = [
        (b"access-control-allow-origin", allowed.encode("latin-1")),
        (b"access-control-allow-methods", rule.methods.encode()),
        (b"access-control-max-age", MAX_AGE.encode()),
    ]
    if rule.request_headers:
        headers.append((b"access-control-allow-headers", rule.request_headers.encode()))
    if rule.allows is not None:
        headers.append((b"vary", b"Origin"))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 204,
        "headers": headers,
    }
    body: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(start)
    await send(body)
