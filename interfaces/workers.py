"""The server processes of `tessera serve --workers N`: uvicorn's supervisor (it replaces a
worker that dies or hangs), with each worker on a listening socket of its own.

On one listening socket shared by every worker, the worker that wakes first accepts a whole
burst of new connections (asyncio accepts up to the backlog per wake-up). A client that opens
its pool of kept-alive connections at once (an API gateway, a load balancer, a load test) can
then land all of them on one worker and leave the others idle: `bench.cpu_per_request` found one
process of two doing all the work in five runs of nine, at half the throughput. With
SO_REUSEPORT each worker listens on its own socket bound to the same address, and Linux spreads
connections over them by their addresses. Elsewhere SO_REUSEPORT does not spread connections,
so the workers share one socket as before."""

from __future__ import annotations

import errno
import logging
import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

log = logging.getLogger("tessera")

STARTUP_FAILURE = 3  # uvicorn's exit code for a server that could not start


def supervisor(config: uvicorn.Config) -> Multiprocess:
    if sys.platform != "linux":
        return Multiprocess(config, sockets=[config.bind_socket()])
    return _SocketPerWorker(config)


class _SocketPerWorker(Multiprocess):
    """uvicorn reads `sockets` each time it starts a worker: here each read opens a new
    socket. The parent closes its copy once that worker has started, as a copy it kept would
    stay in the group after its worker died and take connections nobody accepts."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        self._address = _unused_address(self._family, config.host, config.port)
        self._claim = _claimed(self._address)
        self._handed: list[socket.socket] = []
        super().__init__(config, sockets=[])

    @property
    def sockets(self) -> list[socket.socket]:
        self._close_handed()  # the worker started with the last one holds its own copy
        listener = socket.socket(self._family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Bound, not listening: the worker listens once it serves, so a worker still starting
        # (or restarting) is given no connections; the kernel sends them to those that serve.
        listener.bind(self._address)
        listener.set_inheritable(True)
        self._handed.append(listener)
        return [listener]

    @sockets.setter
    def sockets(self, _: list[socket.socket]) -> None:
        pass  # Multiprocess.__init__ sets it; each worker gets its own instead

    def run(self) -> None:
        # A worker's socket is bound each time one starts: a bind that fails (no file
        # descriptors left) ends the supervisor, which must not leave its workers serving.
        try:
            super().run()
        finally:
            self.terminate_all()
            self.join_all()
            self._claim.close()

    # The three ways the supervisor starts workers: at start, on a signal (HUP restarts all,
    # TTIN adds one), and replacing a dead or hung one.
    def init_processes(self) -> None:
        super().init_processes()
        self._close_handed()

    def handle_signals(self) -> None:
        super().handle_signals()
        self._close_handed()

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self._close_handed()

    def _close_handed(self) -> None:
        while self._handed:
            self._handed.pop().close()


def _claimed(address: tuple[str, int]) -> socket.socket:
    """The address claimed for this supervisor for as long as it runs (the kernel releases the
    claim when the process ends, however it ends). Two servers started at once both find the
    port free (their workers have not bound it yet); the second to claim it is refused."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0tessera serve {address[0]}:{address[1]}")  # abstract: no file to clean up
    except OSError as error:
        claim.close()
        if error.errno != errno.EADDRINUSE:
            raise
        log.error("cannot listen on %s:%s: another tessera server is starting there", *address)
        sys.exit(STARTUP_FAILURE)
    return claim


def _unused_address(family: socket.AddressFamily, host: str, port: int) -> tuple[str, int]:
    """The address to listen on, once no other server listens there. SO_REUSEPORT would let
    a second `tessera serve` on the same port (say an old version left running) quietly share
    the connections; a socket bound without it first is refused while anything listens."""
    probe = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", host, port, error)
        sys.exit(STARTUP_FAILURE)
    # The address as numbers (localhost is 127.0.0.1), and the port chosen when asked for 0.
    bound = probe.getsockname()
    probe.close()
    return bound[0], bound[1]
