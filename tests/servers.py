"""Real servers for the tests, started and removed by the harness itself.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is initialised and
started as the `postgres` user, in a temporary directory that user owns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import psycopg

from tests.install_lock import installing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    for candidate in (f"/usr/lib/postgresql/15/bin/{name}", shutil.which(name)):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError(f"PostgreSQL's {name} not found: run `make system-deps`")


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class PostgresCluster:
    port: int
    directory: Path
    options: str = ""
    _names: Iterator[int] = field(default_factory=lambda: count(1))

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """A fresh, empty database: each test gets its own, so none sees another's events."""
        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def pg_ctl(self, action: str) -> None:
        """stop (fast: clients are disconnected at once, as in a crash or failover) or start."""
        subprocess.run(
            _as_postgres(
                [
                    _pg_bin("pg_ctl"),
                    "-D",
                    str(self.directory / "data"),
                    "-m",
                    "fast",
                    "-o",
                    self.options,
                    "-l",
                    str(self.directory / "log"),
                    "-w",
                    action,
                ]
            ),
            check=True,
            capture_output=True,
        )


@contextlib.contextmanager
def postgres_cluster(durable: bool = False, settings: str = "") -> Iterator[PostgresCluster]:
    """A throwaway cluster. The tests run it with `fsync=off`, for speed only; the benchmark asks
    for a `durable` one (`fsync` and `synchronous_commit` on, as a real deployment has them), so
    that no published figure gains from skipped flushes."""
    directory = Path(tempfile.mkdtemp(prefix="tessera-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    port = free_port()
    data = directory / "data"
    subprocess.run(
        _as_postgres(
            [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    durability = "-c fsync=on -c synchronous_commit=on" if durable else "-c fsync=off"
    options = (
        f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 {durability}"
        f" -c max_connections=300 {settings}"
    )
    subprocess.run(
        _as_postgres(
            [
                _pg_bin("pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(directory / "log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    cluster = PostgresCluster(port=port, directory=directory, options=options)
    try:
        yield cluster
    finally:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(directory, ignore_errors=True)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_redis(port: int | None = None, directory: Path | None = None) -> RedisServer:
    """In memory only; or, given a directory, with an append-only file synced on every write
    (as production runs it, see ops/), so that a restart on the same port keeps the data."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: run `make system-deps`")
    port = port or free_port()
    persistence = (
        ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(directory)]
        if directory
        else ["--appendonly", "no"]
    )
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *persistence],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    return RedisServer(port=port, process=process)


def npm_package(folder: Path, name: str, version: str) -> Path:
    """NAME@VERSION installed with npm into FOLDER/node_modules (ignored by git) unless that very
    version is there already; its folder. One package a folder: npm removes from node_modules
    what it was not asked for this time (--no-save keeps no list). Under the install lock:
    xdist's workers may all find it missing in a fresh clone, and two npm installs into one
    folder break each other."""
    installed = folder / "node_modules" / name / "package.json"
    with installing("npm"):
        if not installed.exists() or json.loads(installed.read_text()).get("version") != version:
            npm = shutil.which("npm")
            if npm is None:
                raise RuntimeError("npm is missing: install Debian's nodejs and npm")
            subprocess.run(
                [
                    *(npm, "install", "--no-save", "--no-package-lock", "--silent"),
                    *("--prefix", str(folder), f"{name}@{version}"),
                ],
                check=True,
            )
    return installed.parent
