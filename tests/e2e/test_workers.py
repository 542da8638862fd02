"""`tessera serve --workers 2` on PostgreSQL and Redis: counters add up across processes."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
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
