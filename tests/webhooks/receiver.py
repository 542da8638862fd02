"""A real webhook receiver for the tests: an HTTP server on 127.0.0.1, in a thread of the test
process, that records every delivery as it arrived (headers, the raw body, the wall-clock time)
and answers as the test scripts it:

    with Receiver() as ok, Receiver(failing_first(1)) as flaky, Receiver(hanging()) as stuck:
        ...                       # ok.url, flaky.url: give them to the service as endpoints
        ok.wait_for(3)            # the first three deliveries, in the order they arrived
    gone = Receiver(answering(410))
    down = closed_port()          # a URL on a port nobody listens on, for the whole run

A hanging receiver holds each request longer than the service's 15 s timeout, and lets go when
the receiver closes, so a test never waits on a hung thread of its own."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.servers import free_port

# Longer than the service's delivery timeout (15 s), so a hanging answer is one it gives up on.
HANG_SECONDS = 20.0


@dataclass(frozen=True)
class Delivery:
    """One POST as the receiver got it."""

    headers: dict[str, str]  # names in lower case
    body: bytes
    arrived: float  # time.time() when the whole body was in
    status: int  # what the receiver answered (0 while a hanging answer never went out)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def type(self) -> str:
        return str(self.payload["type"])


# Given what arrived before it (in order), the status to answer a delivery, or None to hang.
Behaviour = Callable[[list[Delivery], "Delivery"], int | None]


def answering(status: int = 200) -> Behaviour:
    """Every delivery gets `status` (200: accepted; 410: gone for good)."""
    return lambda _earlier, _delivery: status


def failing_first(times: int = 1, status: int = 500) -> Behaviour:
    """Each webhook-id is refused `times` times with `status`, then accepted."""

    def behave(earlier: list[Delivery], delivery: Delivery) -> int:
        seen = sum(1 for d in earlier if d.webhook_id == delivery.webhook_id)
        return status if seen < times else 200

    return behave


def hanging(first: int | None = None) -> Behaviour:
    """Every delivery hangs (or only the first `first` arrivals, then 200)."""

    def behave(earlier: list[Delivery], _delivery: Delivery) -> int | None:
        return None if first is None or len(earlier) < first else 200

    return behave


def closed_port() -> str:
    """A loopback URL nothing listens on: connections to it are refused at once."""
    return f"http://127.0.0.1:{free_port()}/hooks"


class Receiver:
    """The server and what it has received. `url` is where to deliver."""

    def __init__(
        self, behaviour: Behaviour | None = None, path: str = "/hooks", port: int = 0
    ) -> None:
        self.behaviour = behaviour or answering(200)
        self.path = path
        self._deliveries: list[Delivery] = []
        self._attempts: list[Delivery] = []  # every arrival, hung ones included
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", port), _handler_for(self))
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def arrivals(self) -> list[Delivery]:
        """Every request, in arrival order, with the status it was answered (0: hung)."""
        with self._lock:
            return list(self._attempts)

    @property
    def accepted(self) -> list[Delivery]:
        """The deliveries answered 2xx, in arrival order."""
        with self._lock:
            return [d for d in self._attempts if 200 <= d.status < 300]

    def wait_for(self, count: int, timeout: float = 30.0, accepted: bool = True) -> list[Delivery]:
        """At least `count` accepted deliveries (or arrivals), the first `count` of them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = (
                    [d for d in self._attempts if 200 <= d.status < 300]
                    if accepted
                    else list(self._attempts)
                )
                if len(got) >= count:
                    return got[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [(d.type, d.status) for d in self._attempts]
                    raise TimeoutError(f"{len(got)} of {count} deliveries at {self.url}: {kinds}")
                self._lock.wait(left)

    def _record(self, headers: dict[str, str], body: bytes) -> int | None:
        with self._lock:
            arrived = Delivery(headers, body, time.time(), 0)
            status = self.behaviour(list(self._attempts), arrived)
            self._attempts.append(Delivery(headers, body, arrived.arrived, status or 0))
            self._lock.notify_all()
        return status

    def _hang(self) -> None:
        self._closing.wait(HANG_SECONDS)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sender that gave up (its timeout, wrk's end, a killed worker) resets the connection:
        # what the receiver is there to see, not an error of its own.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # Nagle's delay on small answers would be measured as the receiver's, not the sender's.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver (and wrk) uses it

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status = receiver._record(headers, body)
            if status is None:
                receiver._hang()
                self.close_connection = True
                return
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            """What arrived, from the `since`th arrival on, for a receiver in another process
            (bench/webhooks.py): [arrived, status, webhook-id, the body's timestamp] each."""
            since = int(self.path.partition("since=")[2] or 0)
            rows = []
            for d in receiver.arrivals[since:]:
                try:
                    stamp = d.payload.get("timestamp")
                except ValueError:
                    stamp = None
                rows.append([d.arrived, d.status, d.headers.get("webhook-id"), stamp])
            answer = json.dumps(rows).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads what arrived from the receiver, not from stderr

    return Handler


@dataclass
class Receivers:
    """Several receivers opened together and closed together."""

    opened: list[Receiver] = field(default_factory=list)

    def open(self, behaviour: Behaviour | None = None) -> Receiver:
        receiver = Receiver(behaviour).__enter__()
        self.opened.append(receiver)
        return receiver

    def close(self) -> None:
        for receiver in self.opened:
            receiver.close()


def main() -> None:
    """`python -m tests.webhooks.receiver PORT`: a receiver answering 200, in a process of its
    own (the benchmark's), until terminated."""
    import signal
    import sys

    receiver = Receiver(port=int(sys.argv[1]))
    signal.signal(signal.SIGTERM, lambda *_: receiver._closing.set())
    with receiver:
        receiver._closing.wait()


if __name__ == "__main__":
    main()
