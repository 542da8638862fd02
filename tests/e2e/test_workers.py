"""`tessera serve --workers 2` on PostgreSQL and Redis: counters add up across processes."""

from __future__ import annotations

import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import tessera
from tests.servers import PostgresCluster, free_port, wait_for_port


def logins_refused(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tessera_logins_total" and sample.labels == {
                "outcome": "invalid_credentials"
            }:
                return sample.value
    return 0.0


def test_metrics_are_right_whichever_process_answers(
    tmp_path: Path, postgres: PostgresCluster, redis_url: str
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **FAST_ARGON2,
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": postgres.new_database(),
        "REDIS_URL": redis_url,
        "RATE_LIMITS_ENABLED": "false",
    }
    process = subprocess.Popen(
        [tessera(), "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30)
        # Fresh connections, so the kernel spreads them over both processes.
        for n in range(20):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                http.post(
                    "/api/auth/login", json={"login": f"nobody{n}", "password": "not a password"}
                )
        counting = {
            p.name.split("_")[1] for p in (tmp_path / "var" / "prometheus").glob("counter_*.db")
        }
        assert len(counting) == 2, "both server processes must have served some of the logins"
        readings = set()
        for _ in range(6):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                readings.add(logins_refused(http.get("/metrics").text))
        assert readings == {20.0}
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_several_processes_need_postgresql(tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "var"), "PORT": str(free_port())}
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [tessera(), "serve", "--workers", "2"], env=env, capture_output=True, timeout=30
    )
    assert result.returncode == 2
    assert b"DATABASE_URL" in result.stdout + result.stderr


@pytest.mark.serial  # a median of 20 ms: alone, or a busy core is measured instead
def test_keep_alive_answers_do_not_wait_for_delayed_acks(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    """With several processes the listening socket is shared; its accepted connections must
    still get TCP_NODELAY, or each keep-alive answer waits ~40 ms on the client's delayed ACK."""
    port = free_port()
    env = {
        **os.environ,
        **FAST_ARGON2,
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": postgres.new_database(),
    }
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        [tessera(), "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30)
        timings = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(30):  # one connection, kept alive
                started = time.perf_counter()
                assert http.get("/health/live").status_code == 200
                timings.append(time.perf_counter() - started)
        assert statistics.median(timings) < 0.02
    finally:
        process.terminate()
        process.wait(timeout=15)


def postgres_only(data_dir: Path, postgres: PostgresCluster, port: int) -> dict[str, str]:
    """A server's settings on a database of its own, without Redis."""
    env = {
        **os.environ,
        **FAST_ARGON2,
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": postgres.new_database(),
    }
    env.pop("REDIS_URL", None)
    return env


@contextmanager
def two_workers(tmp_path: Path, postgres: PostgresCluster, port: int) -> Iterator[int]:
    """`tessera serve --workers 2` on `port`, once both workers listen: the supervisor's pid."""
    env = postgres_only(tmp_path / "var", postgres, port)
    process = subprocess.Popen([tessera(), "serve", "--workers", "2"], env=env)
    try:
        wait_until(lambda: len(listening(port)) == 2, "both workers listen")
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=15)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def _tcp_rows(port: int, state: str) -> set[str]:
    """The socket inodes in /proc/net/tcp whose local port is `port`, in `state`."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            inodes.add(fields[9])
    return inodes


def listening(port: int) -> set[str]:
    return _tcp_rows(port, "0A")


def workers(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    # multiprocessing's resource tracker is a child of the supervisor too.
    return [
        int(pid)
        for pid in children
        if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def sockets_of(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed since the listing
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def burst(port: int, n: int, busy: int, running: int) -> list[socket.socket]:
    """`n` connections made while the worker `busy` cannot run (busy with other requests, or
    not scheduled on a loaded machine) and `running` has taken what it will, then each
    answered once."""
    os.kill(busy, signal.SIGSTOP)
    try:
        connections = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
        taken: list[int] = []
        while len(taken) < 5 or len(set(taken[-5:])) > 1:  # unchanged for half a second
            taken.append(len(sockets_of(running) & _tcp_rows(port, "01")))
            time.sleep(0.1)
    finally:
        os.kill(busy, signal.SIGCONT)
    for connection in connections:
        connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: tessera\r\n\r\n")
    for connection in connections:
        assert connection.recv(4096).startswith(b"HTTP/1.1 200"), "every connection is served"
    return connections


def test_a_burst_of_kept_alive_connections_is_spread_over_the_workers(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    """On a socket the workers shared, a worker that was not running when a pool of kept-alive
    connections (a gateway's, a load test's) was opened got none of them, and stayed idle for
    as long as the pool lasted: wrk left one of two workers idle in half its runs."""
    port = free_port()
    with two_workers(tmp_path, postgres, port) as supervisor:
        running, busy = workers(supervisor)
        connections = burst(port, 64, busy, running)
        try:
            established = _tcp_rows(port, "01")
            held = [len(sockets_of(pid) & established) for pid in workers(supervisor)]
            assert sum(held) == 64
            # Spread by a hash of the addresses: fewer than 16 of 64 on a worker is a chance
            # of about 1 in 20,000.
            assert min(held) >= 16, f"connections per worker: {held}"
        finally:
            for connection in connections:
                connection.close()


def test_a_worker_that_dies_leaves_no_socket_that_takes_connections(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    """The supervisor replaces a killed worker; a listening socket of the dead one left open
    in the supervisor would take its share of new connections and never answer them."""
    port = free_port()
    with two_workers(tmp_path, postgres, port) as supervisor:
        first = workers(supervisor)
        os.kill(first[0], signal.SIGKILL)
        wait_until(
            lambda: len(listening(port)) == 2 and first[0] not in workers(supervisor),
            "the killed worker is replaced",
        )
        assert not sockets_of(supervisor) & listening(port), "the supervisor listens on nothing"
        for connection in burst(port, 64, *workers(supervisor)):
            connection.close()


def test_a_second_server_on_the_same_port_is_refused(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    """Workers bind with SO_REUSEPORT, which would let another server (an old version left
    running) share their connections; a server already on the port refuses the new one."""
    port = free_port()
    with two_workers(tmp_path, postgres, port):
        env = postgres_only(tmp_path / "second", postgres, port)
        second = subprocess.run(
            [tessera(), "serve", "--workers", "2"], env=env, capture_output=True, timeout=60
        )
        assert second.returncode == 3
        assert b"cannot listen" in second.stdout + second.stderr
        assert len(listening(port)) == 2


def test_a_supervisor_that_cannot_bind_a_new_worker_stops_the_others(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    """Each worker's socket is bound when the worker starts, so replacing a dead worker can
    fail (here no file descriptor is left to the supervisor). The supervisor then ends, and
    takes the worker still serving with it rather than leaving it behind, unsupervised."""
    port = free_port()
    env = postgres_only(tmp_path / "var", postgres, port)
    process = subprocess.Popen(
        [tessera(), "serve", "--workers", "2"], env=env, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: len(listening(port)) == 2, "both workers listen")
        dying, surviving = workers(process.pid)
        # No new descriptor for the supervisor: the replacement's socket cannot be made.
        resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (3, 3))
        os.kill(dying, signal.SIGKILL)
        _, errors = process.communicate(timeout=60)
        assert process.returncode != 0
        assert b"Too many open files" in errors
        wait_until(lambda: not Path(f"/proc/{surviving}").exists(), "the other worker ends")
        assert not listening(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=15)


def test_of_two_servers_started_at_once_on_one_port_one_is_refused() -> None:
    """Two servers started at the same moment both find the port free: neither one's workers
    have bound it yet, so the check for a listener cannot tell. The second to claim the
    address is refused before it starts any worker (here both supervisors in one process)."""
    port = free_port()
    script = (
        "import uvicorn\n"
        "from interfaces.workers import supervisor\n"
        f"config = uvicorn.Config('interfaces.asgi:app', host='127.0.0.1', port={port}, workers=2)\n"
        "first = supervisor(config)\n"
        "print('the first claimed the address', flush=True)\n"
        "second = supervisor(config)\n"
        "print('the second claimed it too', flush=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert b"the first claimed the address" in result.stdout
    assert b"the second claimed it too" not in result.stdout
    assert result.returncode == 3
    assert b"another tessera server is starting there" in result.stderr
