"""Posting a webhook: Standard Webhooks' signature, and an HTTP client that cannot be turned on
the service's own network.

The address is checked where the connection is made, on each address the name resolves to for
that very connection: a name that resolves to a public address when checked and to 169.254.169.254
when connected (DNS rebinding) gains nothing, since nothing else is connected to. No redirect is
followed (http.client follows none), the whole exchange has one deadline, and at most 64 KiB of
the answer is read, then dropped unlogged: only its status code matters.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from application.ports import WebhookPost, WebhookTargetRefused
from domain.webhook import Reach

MAX_ANSWER = 64 * 1024


class StandardSigner:
    """`v1,<base64 HMAC-SHA256>` of `id.timestamp.body`, by the Standard Webhooks library."""

    def sign(self, secret: str, message_id: str, at: datetime, body: bytes) -> str:
        return Webhook(secret).sign(message_id, at, body)


def _guarded_socket(host: str, port: int, timeout: float, reach: Reach) -> socket.socket:
    """A connection to the first address of `host` the service may reach; WebhookTargetRefused
    when it resolves to none such."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise ConnectionError(f"cannot resolve the receiver's name: {error}") from None
    allowed = [
        info
        for info in found
        if reach.allows(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
    ]
    if not allowed:
        raise WebhookTargetRefused(host)
    last: OSError | None = None
    for family, kind, proto, _, address in allowed:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        # http.client writes the headers and the body apart: with Nagle's algorithm the body
        # would wait for the receiver's delayed ACK of the headers (40 ms a post).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect(address)
            return sock
        except OSError as error:
            sock.close()
            last = error
    assert last is not None
    raise last


class _Http(http.client.HTTPConnection):
    reach: Reach

    def connect(self) -> None:
        self.sock = _guarded_socket(self.host, self.port, self._timeout(), self.reach)

    def _timeout(self) -> float:
        return float(self.timeout) if isinstance(self.timeout, int | float) else 15.0


class _Https(http.client.HTTPSConnection):
    reach: Reach
    context: ssl.SSLContext

    def connect(self) -> None:
        timeout = float(self.timeout) if isinstance(self.timeout, int | float) else 15.0
        plain = _guarded_socket(self.host, self.port, timeout, self.reach)
        self.sock = self.context.wrap_socket(plain, server_hostname=self.host)


class GuardedPoster:
    """Posts over http.client, each connection checked by `reach`. `timeout`: seconds for the
    whole exchange (connect, send, answer)."""

    def __init__(self, reach: Reach, timeout: float = 15.0, user_agent: str = "Tessera") -> None:
        self._reach = reach
        self._timeout = timeout
        self._user_agent = user_agent
        self._context = ssl.create_default_context()

    def post(self, delivery: WebhookPost) -> int:
        (outcome,) = self.post_each([delivery], timedelta(seconds=self._timeout))
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome is not None
        return outcome

    def post_each(
        self, deliveries: Sequence[WebhookPost], budget: timedelta
    ) -> list[int | Exception | None]:
        """In turn over one connection (opened again, and checked again, whenever the receiver
        closed it); the first without an answer ends the turn."""
        outcomes: list[int | Exception | None] = [None] * len(deliveries)
        until = time.monotonic() + budget.total_seconds()
        connection: http.client.HTTPConnection | None = None
        try:
            for i, delivery in enumerate(deliveries):
                if i and time.monotonic() > until:
                    break
                if connection is None:
                    connection = self._connection(delivery.url)
                try:
                    status, complete = self._exchange(connection, delivery)
                except WebhookTargetRefused as refused:
                    outcomes[i] = refused
                    break
                except (OSError, http.client.HTTPException) as error:
                    outcomes[i] = (
                        error
                        if isinstance(error, OSError)
                        else ConnectionError(f"not an HTTP answer: {type(error).__name__}")
                    )
                    break
                outcomes[i] = status
                if not complete:  # an answer longer than is read: the connection cannot go on
                    connection.close()
                    connection = None
        finally:
            if connection is not None:
                connection.close()
        return outcomes

    def _connection(self, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https":
            https = _Https(host, parts.port, timeout=self._timeout, context=self._context)
            https.reach, https.context = self._reach, self._context
            return https
        plain = _Http(host, parts.port, timeout=self._timeout)
        plain.reach = self._reach
        return plain

    def _exchange(
        self, connection: http.client.HTTPConnection, delivery: WebhookPost
    ) -> tuple[int, bool]:
        """The status code, and whether the whole answer was read (so the connection can
        carry the next post)."""
        parts = urlsplit(delivery.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        deadline = time.monotonic() + self._timeout
        if connection.sock is not None:
            connection.sock.settimeout(self._timeout)
        connection.request(
            "POST",
            path,
            body=delivery.body,
            headers={
                **delivery.headers,
                "user-agent": self._user_agent,
                "content-length": str(len(delivery.body)),
            },
        )
        self._left(connection, deadline)
        answer = connection.getresponse()
        remaining = MAX_ANSWER
        while remaining > 0:
            self._left(connection, deadline)
            chunk = answer.read(min(remaining, 16 * 1024))
            if not chunk:
                break
            remaining -= len(chunk)
        return int(answer.status), answer.isclosed()

    @staticmethod
    def _left(connection: http.client.HTTPConnection, deadline: float) -> None:
        """Each wait gets what is left of the exchange's deadline, so a receiver that answers
        a byte at a time cannot stretch it."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the receiver outlasted the deadline")
        if connection.sock is not None:
            connection.sock.settimeout(left)
