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
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from application.ports import WebhookPost, WebhookTargetRefused
from domain.webhook import Reach

MAX_ANSWER = 64 * 1024


class StandardSigner:
    """`v1,<base64 HMAC-SHA256>` of `id.timestamp.body`, by the Standard Webhooks library."""

    def sign(self, secret: str, message_id: str, at: datetime, body: bytes) -> str:
        return Webhook(secret).sign(message_id, at, body)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the receiver outlasted the deadline")
    return left


class _DeadlineSocket(socket.socket):
    """A socket's own timeout restarts at every byte, so a receiver that answers a byte at a
    time could hold a post for ever: each wait here is given only what is left of the
    exchange's one deadline."""

    deadline = float("inf")

    def _wait(self) -> None:
        if self.deadline != float("inf"):
            self.settimeout(_left(self.deadline))

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._wait()
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._wait()
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._wait()
        super().sendall(data, flags)


class _DeadlineTls(ssl.SSLSocket):
    """The same over TLS (whose reads do not go through the plain socket's methods)."""

    deadline = float("inf")

    def _wait(self) -> None:
        if self.deadline != float("inf"):
            self.settimeout(_left(self.deadline))

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self._wait()
        return super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self._wait()
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        # sendall sends piece by piece through here, each with a timeout of its own.
        self._wait()
        return super().send(data, flags)


def _guarded_socket(host: str, port: int, deadline: float, reach: Reach) -> _DeadlineSocket:
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
        sock = _DeadlineSocket(family, kind, proto)
        sock.settimeout(_left(deadline))
        # http.client writes the headers and the body apart: with Nagle's algorithm the body
        # would wait for the receiver's delayed ACK of the headers (40 ms a post).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.connect(address)
            sock.deadline = deadline
            return sock
        except OSError as error:
            sock.close()
            last = error
    assert last is not None
    raise last


class _Http(http.client.HTTPConnection):
    reach: Reach
    deadline: float  # the current exchange's, set before each

    def connect(self) -> None:
        self.sock = _guarded_socket(self.host, self.port, self.deadline, self.reach)


class _Https(http.client.HTTPSConnection):
    reach: Reach
    deadline: float
    context: ssl.SSLContext

    def connect(self) -> None:
        plain = _guarded_socket(self.host, self.port, self.deadline, self.reach)
        tls = self.context.wrap_socket(plain, server_hostname=self.host)
        assert isinstance(tls, _DeadlineTls)
        tls.deadline = self.deadline
        self.sock = tls


class GuardedPoster:
    """Posts over http.client, each connection checked by `reach`. `timeout`: seconds for the
    whole exchange (connect, send, answer)."""

    def __init__(
        self,
        reach: Reach,
        timeout: float = 15.0,
        user_agent: str = "Tessera",
        trust: ssl.SSLContext | None = None,
    ) -> None:
        """`trust`: the certificates receivers are checked against (the system's by default)."""
        self._reach = reach
        self._timeout = timeout
        self._user_agent = user_agent
        self._context = trust or ssl.create_default_context()
        self._context.sslsocket_class = _DeadlineTls

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
        assert isinstance(connection, _Http | _Https)
        connection.deadline = deadline
        if isinstance(connection.sock, _DeadlineSocket | _DeadlineTls):
            connection.sock.deadline = deadline  # a kept connection: this exchange's deadline
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
        answer = connection.getresponse()
        remaining = MAX_ANSWER
        while remaining > 0:
            chunk = answer.read(min(remaining, 16 * 1024))
            if not chunk:
                break
            remaining -= len(chunk)
        return int(answer.status), answer.isclosed()
