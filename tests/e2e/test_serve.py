"""End to end: `tessera serve` as a real process on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST_ARGON2
from tests.servers import PostgresCluster, free_port, wait_for_port

PASSWORD = "correct horse battery staple"


def tessera() -> str:
    found = shutil.which("tessera", path=str(Path(sys.executable).parent))
    assert found, "the tessera console script is not installed"
    return found


def run_tessera(data_dir: Path, *args: str, **settings: str) -> str:
    """`tessera ARGS` on the embedded default's DATA_DIR, as an operator runs it beside
    `tessera serve`, with `settings`: what it printed."""
    env = {**os.environ, "DATA_DIR": str(data_dir), **settings}
    for name in ("DATABASE_URL", "REDIS_URL", "LOG_FILE"):
        env.pop(name, None)
    done = subprocess.run([tessera(), *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextlib.contextmanager
def serving(
    deployment: str, request: pytest.FixtureRequest, tmp_path: Path, **settings: str
) -> Iterator[tuple[str, Path]]:
    """A real `tessera serve` on 127.0.0.1, on SQLite or on the session's PostgreSQL cluster,
    with `settings` over the tests' defaults: its base URL and DATA_DIR."""
    port = int(settings.pop("PORT", "0")) or free_port()
    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        **FAST_ARGON2,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "PUBLIC_URL": "https://auth.example.test",
        # The test itself is the reverse proxy here: it connects from 127.0.0.1.
        "TRUSTED_PROXIES": "127.0.0.0/8",
        **settings,
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    if deployment == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        env["DATABASE_URL"] = cluster.new_database()
    # To a file, not a pipe nobody reads: a full pipe would stop the server mid-log-line.
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [tessera(), "serve"], env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", data_dir
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with serving(request.param, request, tmp_path) as served:
        yield served


def wait_for_mail(mail_dir: Path, to: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in mail_dir.glob("*.eml"):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == to:
                return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        time.sleep(0.05)
    raise TimeoutError(f"no mail to {to} in {mail_dir}")


def test_the_whole_flow_over_http(server: tuple[str, Path]) -> None:
    base, data_dir = server
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/health/ready").status_code == 200
        registered = http.post(
            "/api/auth/register",
            json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text

        text = wait_for_mail(data_dir / "mail", "ada@example.com")
        # The link comes from PUBLIC_URL, not from the Host header this request carried.
        match = re.search(r"https://auth\.example\.test/verify-email\?token=([A-Za-z0-9_-]+)", text)
        assert match, text
        assert (
            http.post("/api/auth/verify-email", json={"token": match.group(1)}).status_code == 200
        )

        tokens = http.post("/api/auth/login", json={"login": "ada", "password": PASSWORD}).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert http.get("/api/users/me", headers=auth).json()["username"] == "ada"
        assert (
            http.put("/api/users/me", headers=auth, json={"display_name": "Ada"}).status_code == 200
        )

        refreshed = http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        auth = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        assert http.post("/api/auth/logout", headers=auth).status_code == 204
        assert http.get("/api/users/me", headers=auth).status_code == 401
        assert "tessera_logins_total" in http.get("/metrics").text


def test_one_registration_mails_exactly_once(server: tuple[str, Path]) -> None:
    base, data_dir = server
    with httpx.Client(base_url=base, timeout=10) as http:
        http.post(
            "/api/auth/register",
            json={"email": "bob@example.com", "username": "bob", "password": PASSWORD},
        )
        wait_for_mail(data_dir / "mail", "bob@example.com")
        time.sleep(0.5)  # give a second copy, were one coming, the time to arrive
    assert len(list((data_dir / "mail").glob("*.eml"))) == 1


def test_a_trusted_proxy_forwards_the_client_address(server: tuple[str, Path]) -> None:
    """From a trusted peer, the rightmost untrusted X-Forwarded-For hop is the client: spoofed
    hops further left are ignored, and each client address has its own login allowance."""
    base, _ = server
    with httpx.Client(base_url=base, timeout=10) as http:

        def attempt(forwarded_for: str, n: int = 0) -> int:
            return http.post(
                "/api/auth/login",
                json={"login": f"user{n}", "password": "wrong password"},
                headers={"X-Forwarded-For": forwarded_for},
            ).status_code

        # One client behind the proxy, claiming a new address each time: still one client.
        spoofed = [attempt(f"10.9.9.{n}, 198.51.100.7", n) for n in range(31)]
        assert spoofed[:30] == [401] * 30
        assert spoofed[30] == 429
        # Another real client behind the same proxy has an allowance of its own.
        assert attempt("198.51.100.8") == 401
