"""Answers that must not tell who has an account, by their timing either: measured as ratios of
medians on a real server with production argon2 parameters, never as absolute times."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import PASSWORD, tessera, wait_for_mail
from tests.servers import free_port, wait_for_port

# Compares response times of real argon2 work: alone, or the medians are noise.
pytestmark = pytest.mark.serial

SAMPLES = 21


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("timing")
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATA_DIR": str(tmp / "var"),
        # Production hashing costs (the defaults), no locks and no limits in the way of sampling.
        "LOCKOUT_THRESHOLD": "100000",
        "RATE_LIMITS_ENABLED": "false",
    }
    for name in (
        "DATABASE_URL",
        "REDIS_URL",
        "ARGON2_TIME_COST",
        "ARGON2_MEMORY_COST",
        "ARGON2_PARALLELISM",
    ):
        env.pop(name, None)
    process = subprocess.Popen([tessera(), "serve"], env=env, cwd=tmp, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            http.post(
                "/api/auth/register",
                json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
            )
            token = (
                wait_for_mail(tmp / "var" / "mail", "ada@example.com").split("token=")[1].split()[0]
            )
            http.post("/api/auth/verify-email", json={"token": token})
            yield http
    finally:
        process.terminate()
        process.wait(timeout=10)


def median_seconds(http: httpx.Client, path: str, body: dict[str, str]) -> float:
    times = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        http.post(path, json=body)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_medians(
    http: httpx.Client, path: str, first: dict[str, str], second: dict[str, str]
) -> tuple[float, float]:
    """Alternates the two requests, so a busy machine slows both alike, and compares medians."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(SAMPLES):
        for body, samples in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            http.post(path, json=body)
            samples.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def test_unknown_login_costs_what_a_wrong_password_costs(server: httpx.Client) -> None:
    median_seconds(server, "/api/auth/login", {"login": "ada", "password": "warm up"})
    wrong = median_seconds(
        server, "/api/auth/login", {"login": "ada", "password": "wrong password"}
    )
    unknown = median_seconds(
        server, "/api/auth/login", {"login": "nobody", "password": "wrong password"}
    )
    assert 0.5 <= unknown / wrong <= 2.0, (unknown, wrong)


def test_forgot_password_costs_the_same_for_known_and_unknown_addresses(
    server: httpx.Client,
) -> None:
    known, unknown = paired_medians(
        server,
        "/api/auth/forgot-password",
        {"email": "ada@example.com"},
        {"email": "bob@example.com"},
    )
    assert 0.5 <= unknown / known <= 2.0, (unknown, known)


def test_the_decoy_hash_is_a_real_argon2_verification(server: httpx.Client, tmp_path: Path) -> None:
    """Guards the test above: an unknown login must take at least a hash's time, not ~0."""
    del tmp_path
    bare = median_seconds(server, "/api/auth/verify-email/resend", {"email": "nobody@example.com"})
    unknown = median_seconds(
        server, "/api/auth/login", {"login": "nobody", "password": "wrong password"}
    )
    assert unknown > 3 * bare, (unknown, bare)
