"""One access-log line per request, and a request id that ties a request's logs together."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import trace

from interfaces.logs import RequestInfo, current_request

log = logging.getLogger("tessera.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_log(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if str(scope["type"]) != "http":
            await app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # A caller's id is kept only if it is harmless to log and to echo back.
        info = RequestInfo(request_id=offered if _SAFE_ID.match(offered) else uuid.uuid4().hex)
        # OpenTelemetry's middleware runs outside this one: the current span is the request's
        # server span, which APM tools call the transaction.
        server_span = trace.get_current_span().get_span_context()
        if server_span.is_valid:
            info.transaction_id = format(server_span.span_id, "016x")
        token = current_request.set(info)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", info.request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            info.route = str(scope.get("path_template") or "unmatched")
            fields: dict[str, Any] = {
                "method": scope.get("method", ""),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            }
            if not info.outcome:
                info.outcome = "ok" if status < 400 else str(status)
            log.info("request", extra=fields)
            current_request.reset(token)

    return middleware
