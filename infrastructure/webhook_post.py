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
import threading
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
    """Posts over http.client, each connection checked by `reach` where it is made. `timeout`:
    seconds for the whole exchange (connect, send, answer). `connections`: how many posts of one
    call (one receiver's) are in flight at once, each over a connection of its own, kept open
    between calls for IDLE_LIMIT seconds."""

    def __init__(
        self,
        reach: Reach,
        timeout: float = 15.0,
        user_agent: str = "Tessera",
        trust: ssl.SSLContext | None = None,
        connections: int = 4,
    ) -> None:
        """`trust`: the certificates receivers are checked against (the system's by default)."""
        self._reach = reach
        self._timeout = timeout
        self._user_agent = user_agent
        self._trust = trust
        self._context: ssl.SSLContext | None = None
        self._context_made = threading.Lock()
        self._connections = max(1, connections)
        self._idle = _IdleConnections(limit=2 * self._connections)

    def post(self, delivery: WebhookPost) -> int:
        (outcome,) = self.post_each([delivery], timedelta(seconds=self._timeout))
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome is not None
        return outcome

    def post_each(
        self, deliveries: Sequence[WebhookPost], budget: timedelta
    ) -> list[int | Exception | None]:
        """Up to `connections` at once, each over a kept connection (opened again, and checked
        again, whenever the receiver closed it); once one is left without an answer, or
        `budget` has run out, no other starts (those in flight finish)."""
        outcomes: list[int | Exception | None] = [None] * len(deliveries)
        turn = _Turn(len(deliveries), time.monotonic() + budget.total_seconds())
        helpers = [
            threading.Thread(target=self._post_turns, args=(deliveries, outcomes, turn))
            for _ in range(min(self._connections, len(deliveries)) - 1)
        ]
        for helper in helpers:
            helper.start()
        try:
            self._post_turns(deliveries, outcomes, turn)
        finally:
            # Whatever ended this thread's turns: none of the call's posts outlives it.
            turn.end()
            for helper in helpers:
                helper.join()
        return outcomes

    def _post_turns(
        self,
        deliveries: Sequence[WebhookPost],
        outcomes: list[int | Exception | None],
        turn: _Turn,
    ) -> None:
        """Takes the next post not yet taken, until none is left or the turn ends."""
        connection: http.client.HTTPConnection | None = None
        try:
            while (i := turn.next()) is not None:
                delivery = deliveries[i]
                try:
                    connection, status = self._answer(connection, delivery)
                except WebhookTargetRefused as refused:
                    connection = None  # closed by _answer
                    outcomes[i] = refused
                    turn.end()
                    return
                except (OSError, http.client.HTTPException) as error:
                    connection = None
                    outcomes[i] = (
                        error
                        if isinstance(error, OSError)
                        else ConnectionError(f"not an HTTP answer: {type(error).__name__}")
                    )
                    turn.end()
                    return
                except BaseException:
                    connection = None  # closed by _answer: never kept
                    raise
                outcomes[i] = status
        finally:
            if connection is not None:
                self._idle.put(_origin(connection), connection)

    def _answer(
        self, connection: http.client.HTTPConnection | None, delivery: WebhookPost
    ) -> tuple[http.client.HTTPConnection | None, int]:
        """The connection to keep (None: closed) and the status code of one exchange, with one
        deadline. A kept connection the receiver closed while idle fails before any answer:
        the post is made once more on a new connection, within the same deadline (the receiver
        may then see it twice, which at least once allows). Never once a status came: that is
        the receiver's answer, whatever happens to the rest."""
        deadline = time.monotonic() + self._timeout
        origin = _origin_of(delivery.url)
        if connection is not None and _origin(connection) != origin:
            self._idle.put(_origin(connection), connection)
            connection = None
        kept = connection or self._idle.take(origin)
        tries = [kept, None] if kept is not None else [None]
        for n, reused in enumerate(tries):
            current = reused or self._connection(delivery.url)
            try:
                status, complete = self._exchange(current, delivery, deadline)
            except ConnectionError:  # RemoteDisconnected, a reset, a broken pipe: no status
                current.close()
                if reused is None or n + 1 == len(tries):
                    raise
                continue
            except BaseException:
                current.close()
                raise
            if not complete:  # an answer longer than is read: the connection cannot go on
                current.close()
                return None, status
            return current, status
        raise AssertionError("unreachable")

    def _tls(self) -> ssl.SSLContext:
        """Made at the first https post, not with the service: loading the system's certificates
        takes about 20 ms, and a service with no https receiver needs none."""
        with self._context_made:
            if self._context is None:
                self._context = self._trust or ssl.create_default_context()
                self._context.sslsocket_class = _DeadlineTls
            return self._context

    def _connection(self, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https":
            context = self._tls()
            https = _Https(host, parts.port, timeout=self._timeout, context=context)
            https.reach, https.context = self._reach, context
            return https
        plain = _Http(host, parts.port, timeout=self._timeout)
        plain.reach = self._reach
        return plain

    def _exchange(
        self, connection: http.client.HTTPConnection, delivery: WebhookPost, deadline: float
    ) -> tuple[int, bool]:
        """The status code, and whether the whole answer was read (so the connection can
        carry the next post). Fails only before the status is known."""
        parts = urlsplit(delivery.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
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
        try:
            while remaining > 0:
                chunk = answer.read(min(remaining, 16 * 1024))
                if not chunk:
                    break
                remaining -= len(chunk)
        except (OSError, http.client.HTTPException):
            # The body is dropped unread anyway: a reset or the deadline within it leaves the
            # status as answered (sent again, the post could be recorded as failed though it
            # was delivered), and the connection unfit to carry another.
            return int(answer.status), False
        return int(answer.status), answer.isclosed()


class _Turn:
    """The posts of one call, handed out one at a time to its connections."""

    def __init__(self, count: int, until: float) -> None:
        self._count, self._until = count, until
        self._taken = 0
        self._ended = False
        self._lock = threading.Lock()

    def next(self) -> int | None:
        with self._lock:
            if self._ended or self._taken == self._count:
                return None
            if self._taken and time.monotonic() > self._until:
                return None
            self._taken += 1
            return self._taken - 1

    def end(self) -> None:
        with self._lock:
            self._ended = True


# Seconds a kept connection may wait for its next post: receivers close idle ones (5 s is a
# common default); one closed sooner costs a post sent again on a new connection.
IDLE_LIMIT = 2.0

_Origin = tuple[str, str, int | None]


def _origin_of(url: str) -> _Origin:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname or "", parts.port or default


def _origin(connection: http.client.HTTPConnection) -> _Origin:
    scheme = "https" if isinstance(connection, _Https) else "http"
    return scheme, connection.host, connection.port


class _IdleConnections:
    """Connections kept open between calls, a bounded number per receiver (scheme, host, port),
    each checked by `reach` when it was made (so a name that now resolves elsewhere changes
    nothing: nothing else is connected to). While any is kept, a reaper thread closes each once
    idle past IDLE_LIMIT: after the last post, none stays open until the process ends."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._kept: dict[_Origin, list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()
        self._reaping = False  # a reaper thread runs (it ends once nothing is kept)

    def take(self, origin: _Origin) -> http.client.HTTPConnection | None:
        """The receiver's most recently used connection, if one is kept and not idle too
        long."""
        with self._lock:
            stale = self._stale(time.monotonic())
            kept = self._kept.get(origin)
            found = kept.pop()[0] if kept else None
            if kept == []:
                del self._kept[origin]
        for connection in stale:
            connection.close()
        return found

    def put(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            kept = self._kept.setdefault(origin, [])
            if len(kept) < self._limit:
                kept.append((connection, time.monotonic()))
                if not self._reaping:
                    self._reaping = True
                    threading.Thread(target=self._reap, name="webhook-idle", daemon=True).start()
                return
        connection.close()

    def _stale(self, now: float) -> list[http.client.HTTPConnection]:
        """Those idle past IDLE_LIMIT, no longer kept (called holding the lock)."""
        stale = []
        for each in list(self._kept):
            kept = self._kept[each]
            stale += [c for c, since in kept if now - since > IDLE_LIMIT]
            fresh = [(c, since) for c, since in kept if now - since <= IDLE_LIMIT]
            if fresh:
                self._kept[each] = fresh
            else:
                del self._kept[each]
        return stale

    def _reap(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                stale = self._stale(now)
                times = [since for kept in self._kept.values() for _, since in kept]
                if not times:
                    self._reaping = False  # the next put starts another
            for connection in stale:
                connection.close()
            if not times:
                return
            time.sleep(max(0.05, min(times) + IDLE_LIMIT - now))
