"""A real `tessera serve` process for the benchmark, and the backing servers it runs on:
PostgreSQL and Redis are started the way the tests start them (tests/servers.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import free_port, wait_for_port

_ROOT = Path(__file__).resolve().parent.parent

# Production settings, except what a benchmark must switch off: rate limits (every request
# comes from 127.0.0.1) and lockouts (the flood logs in as the same accounts many times). The
# login and registration scripts name a client address of their own per request, believed from
# 127.0.0.1: the hash gate's fair share is per address, and these are many people's logins.
BENCH_ENV = {
    "RATE_LIMITS_ENABLED": "false",
    "TRUSTED_PROXIES": "127.0.0.1",
    "HOST": "127.0.0.1",
    "LOG_LEVEL": "INFO",
}
# Settings the benchmark takes from the service's defaults, never from the caller's shell.
_CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "ARGON2_TIME_COST",
    "ARGON2_MEMORY_COST",
    "ARGON2_PARALLELISM",
    "HASH_CONCURRENCY",
    "HASH_QUEUE",
    "HASH_QUEUE_TIMEOUT",
    "HASH_SHARE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "LOG_FILE",
)


def service_env(data_dir: Path, database_url: str | None, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED and not k.startswith("BENCH_")}
    env.update(BENCH_ENV)
    env["DATA_DIR"] = str(data_dir)
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def worker_pids(self) -> list[int]:
        """The server processes' ids: the workers, or the one process itself."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        pids = [int(p) for p in children.read_text().split()] if children.exists() else []
        # uvicorn spawns its workers through multiprocessing, whose resource tracker is a child too.
        workers = [p for p in pids if b"resource_tracker" not in _cmdline(p)]
        return workers or [self.process.pid]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _command(server: str, workers: int, port: int, env: dict[str, str]) -> list[str]:
    """`tessera serve` (uvicorn), or the same ASGI app factory under granian for comparison."""
    bin_dir = Path(sys.executable).parent
    if server == "uvicorn":
        return [str(bin_dir / "tessera"), "serve", "--workers", str(workers)]
    if server == "plain":
        # `tessera serve` with sealing off (bench/plain_keys.py); the server runs in DATA_DIR.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        return [sys.executable, "-m", "bench.plain_keys", "serve", "--workers", str(workers)]
    if server == "granian":
        # What `tessera serve` sets up for several processes: shared Prometheus samples.
        metrics = Path(env["DATA_DIR"]) / "prometheus"
        shutil.rmtree(metrics, ignore_errors=True)
        metrics.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        return [
            str(bin_dir / "granian"),
            "--interface=asgi",
            "--factory",
            f"--workers={workers}",
            "--host=127.0.0.1",
            f"--port={port}",
            "--log-level=warning",
            "interfaces.asgi:app",
        ]
    raise ValueError(f"unknown server {server!r}")


@contextmanager
def serve(
    env: dict[str, str], workers: int, log_path: Path, server_name: str = "uvicorn"
) -> Iterator[Server]:
    port = free_port()
    env = {**env, "PORT": str(port)}
    command = _command(server_name, workers, port, env)
    with running(command, env, port, log_path, _ready, cwd=env["DATA_DIR"]) as server:
        yield server


@contextmanager
def running(
    command: list[str],
    env: dict[str, str],
    port: int,
    log_path: Path,
    ready: Callable[[str], bool],
    cwd: str | None = None,
) -> Iterator[Server]:
    """A server process on 127.0.0.1:`port`, once `ready(url)` says so; stopped on leaving."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}", process=process)
    try:
        wait_for_port(port, timeout=60)
        _wait_until(ready, server.url)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until(ready: Callable[[str], bool], url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ready(url):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} never became ready")


def _ready(url: str) -> bool:
    # Ready but for the read models: no projector runs beside the benchmark's server, so after
    # a large seeding their lag keeps /health/ready at 503 (it says "lagging").
    answer = httpx.get(f"{url}/health/ready", timeout=5)
    checks = {k: v for k, v in answer.json().items() if k not in ("status", "projections")}
    return all(state == "ok" for state in checks.values())
