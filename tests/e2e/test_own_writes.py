"""Through real server processes at the default settings: a client reads its own writes at once
(sessions, activity, an admin's listing, an auditor's trail), and every process sees another's
change of an account on the very next request, though each answers `/me` from its memory."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import tessera
from tests.servers import PostgresCluster, free_port, wait_for_port

PASSWORD = "correct horse battery staple"


class Deployment:
    """`tessera serve` processes (and, on PostgreSQL, a `tessera projector`) on one database."""

    def __init__(self, env: dict[str, str], cwd: Path, servers: int, projector: bool) -> None:
        self.env = env
        self.cwd = cwd
        self.urls: list[str] = []
        self._stack = ExitStack()
        for _ in range(servers):
            port = free_port()
            self._start(["serve"], {"PORT": str(port)})
            self.urls.append(f"http://127.0.0.1:{port}")
        if projector:
            self._start(["projector"], {})
        for url in self.urls:
            wait_for_port(int(url.rsplit(":", 1)[1]), timeout=30)

    def _start(self, command: list[str], extra: dict[str, str]) -> None:
        process = subprocess.Popen(
            [tessera(), *command],
            env={**self.env, **extra},
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def stop() -> None:
            process.terminate()
            process.wait(timeout=15)

        self._stack.callback(stop)

    def client(self, n: int) -> httpx.Client:
        return self._stack.enter_context(httpx.Client(base_url=self.urls[n], timeout=10))

    def admin(self, *args: str) -> None:
        subprocess.run(
            [tessera(), "admin", *args], env=self.env, cwd=self.cwd, check=True, timeout=60
        )

    def close(self) -> None:
        self._stack.close()


def environment(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        **FAST_ARGON2,
        "DATA_DIR": str(tmp_path / "var"),
        "REQUIRE_VERIFIED_EMAIL": "false",  # the mail is not what these tests are about
        "RATE_LIMITS_ENABLED": "false",
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    return env


@pytest.fixture(params=["sqlite", "postgres+redis"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """The embedded default (one process doing everything), or production's shape: two API
    processes, the projections in a process of their own."""
    env = environment(tmp_path)
    if request.param == "sqlite":
        made = Deployment(env, tmp_path, servers=1, projector=False)
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        env["DATABASE_URL"] = cluster.new_database()
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
        made = Deployment(env, tmp_path, servers=2, projector=True)
    yield made
    made.close()


def register(http: httpx.Client, who: str) -> dict[str, Any]:
    answer = http.post(
        "/api/auth/register",
        json={"email": f"{who}@example.com", "username": who, "password": PASSWORD},
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def log_in(http: httpx.Client, who: str) -> dict[str, str]:
    answer = http.post("/api/auth/login", json={"login": who, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_a_login_is_in_the_sessions_and_the_activity_at_once(deployment: Deployment) -> None:
    first = deployment.client(0)
    last = deployment.client(-1)  # on PostgreSQL, another process than the one that logged in
    register(first, "ada")
    for attempt in range(1, 6):
        assert first.post("/api/auth/login", json={"login": "ada", "password": "wrong"}).is_error
        bearer = log_in(first, "ada")
        sessions = last.get("/api/users/me/sessions", headers=bearer)
        assert sessions.status_code == 200
        assert sessions.headers["Tessera-Read-Behind"] == "0"
        assert len(sessions.json()) == attempt
        assert sessions.json()[0]["current"] is True  # newest first: this very login
        activity = last.get("/api/users/me/activity", headers=bearer)
        assert activity.headers["Tessera-Read-Behind"] == "0"
        types = [entry["type"] for entry in activity.json()["entries"]]
        assert types[0] == "SessionStarted"
        assert types.count("SessionStarted") == attempt
        assert types.count("LoginFailed") == attempt
    older = sessions.json()[-1]["id"]
    assert first.delete(f"/api/users/me/sessions/{older}", headers=bearer).status_code == 204
    left = last.get("/api/users/me/sessions", headers=bearer).json()
    assert older not in [session["id"] for session in left]
    assert len(left) == 4


def test_an_admins_listing_and_an_auditors_trail_show_their_own_commands_at_once(
    deployment: Deployment,
) -> None:
    http = deployment.client(0)
    other = deployment.client(-1)
    register(http, "root")
    register(http, "ada")
    deployment.admin("grant-role", "root", "admin")
    deployment.admin("grant-role", "root", "auditor")
    bearer = log_in(http, "root")
    ada = http.get("/api/admin/accounts", params={"q": "ada"}, headers=bearer).json()
    ada_id = ada["accounts"][0]["id"]
    for _ in range(3):
        assert http.post(f"/api/admin/accounts/{ada_id}/disable", headers=bearer).status_code == 204
        listed = other.get("/api/admin/accounts", params={"q": "ada"}, headers=bearer)
        assert listed.headers["Tessera-Read-Behind"] == "0"
        assert listed.json()["accounts"][0]["disabled"] is True
        assert http.post(f"/api/admin/accounts/{ada_id}/enable", headers=bearer).status_code == 204
        listed = other.get("/api/admin/accounts", params={"q": "ada"}, headers=bearer)
        assert listed.json()["accounts"][0]["disabled"] is False
        trail = other.get(
            "/api/audit/events",
            params={"account_id": ada_id, "type": "AccountEnabled"},
            headers=bearer,
        )
        assert trail.headers["Tessera-Read-Behind"] == "0"
        assert trail.json()["entries"], "the auditor's own command must be in the trail at once"


def test_every_process_sees_another_processs_change_on_the_next_request(
    deployment: Deployment,
) -> None:
    """`/me` comes from each process's memory while the account is unchanged; a profile edit,
    a logout or a password change made through one process shows on the next request to any."""
    if len(deployment.urls) < 2:
        pytest.skip("the embedded default is one process")
    one, two = deployment.client(0), deployment.client(1)
    register(one, "ada")
    bearer = log_in(one, "ada")
    for n in range(5):
        assert one.get("/api/users/me", headers=bearer).status_code == 200  # a copy in each
        assert two.get("/api/users/me", headers=bearer).status_code == 200
        edited = two.put("/api/users/me", json={"display_name": f"Ada {n}"}, headers=bearer)
        assert edited.status_code == 200
        assert one.get("/api/users/me", headers=bearer).json()["display_name"] == f"Ada {n}"
    other_device = log_in(two, "ada")
    assert one.get("/api/users/me", headers=other_device).status_code == 200
    assert two.post("/api/auth/logout", json={}, headers=other_device).status_code == 204
    assert one.get("/api/users/me", headers=other_device).status_code == 401
    changed = two.put(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a whole new passphrase 42"},
        headers=log_in(two, "ada"),
    )
    assert changed.status_code == 204
    assert one.get("/api/users/me", headers=bearer).status_code == 401
