"""Notices end to end: changes to the ways in made over HTTP against a real `tessera serve`, each
mailed once through a real SMTP server, on the embedded default (the server's own worker) and on
PostgreSQL with Redis (a `tessera projector` and a `tessera worker` of their own)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from tests.authenticator import Authenticator
from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import PASSWORD, tessera
from tests.servers import PostgresCluster, free_port, start_redis, wait_for_port
from tests.smtp import ScriptedHandler, SmtpServer

PUBLIC_URL = "https://auth.example.test"
DEVICE = "Notice-E2E/1.0 (the person's own browser)"
NEW_PASSWORD = "another correct horse battery"


@dataclass
class Service:
    base: str
    smtp: SmtpServer

    def mails(self) -> list[EmailMessage]:
        return self.smtp.handler.to("ada@example.com")


@pytest.fixture(params=["sqlite", "postgres+redis"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    with SmtpServer(ScriptedHandler()) as smtp:
        env = {
            **os.environ,
            **FAST_ARGON2,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "DATA_DIR": str(tmp_path / "var"),
            "PUBLIC_URL": PUBLIC_URL,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(smtp.port),
            "NOTIFY_NEW_SIGN_IN": "false",  # the notices are what this is about
        }
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        commands = [["serve"]]
        redis_server = None
        if request.param == "postgres+redis":
            cluster: PostgresCluster = request.getfixturevalue("postgres")
            redis_server = start_redis()
            env["DATABASE_URL"] = cluster.new_database()
            env["REDIS_URL"] = redis_server.url
            env["WORKER_METRICS_PORT"] = str(free_port())
            commands += [["projector"], ["worker"]]
        try:
            for n, command in enumerate(commands):
                with (tmp_path / f"{command[0]}-{n}.log").open("wb") as log:
                    processes.append(
                        subprocess.Popen(
                            [tessera(), *command],
                            env=env,
                            cwd=tmp_path,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
            wait_for_port(port)
            yield Service(f"http://127.0.0.1:{port}", smtp)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=15)
            if redis_server is not None:
                redis_server.stop()


def eventually(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    assert check(), "timed out"


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_each_change_to_the_ways_in_is_mailed_once(service: Service) -> None:
    with httpx.Client(base_url=service.base, timeout=10, headers={"User-Agent": DEVICE}) as http:
        registered = http.post(
            "/api/auth/register",
            json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        eventually(lambda: len(service.mails()) == 1)
        token = re.search(r"verify-email\?token=([A-Za-z0-9_-]+)", text_of(service.mails()[0]))
        assert token
        assert http.post("/api/auth/verify-email", json={"token": token[1]}).status_code == 200
        tokens = http.post("/api/auth/login", json={"login": "ada", "password": PASSWORD}).json()
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}

        def changed(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
            answer = http.request(method, path, headers=auth, json=body)
            assert answer.status_code < 300, (path, answer.text)
            return answer.json() if answer.content else None

        secret = changed("POST", "/api/users/me/mfa", {"action": "enable"})["secret"]
        codes = changed(
            "POST", "/api/users/me/mfa", {"action": "confirm", "code": pyotp.TOTP(secret).now()}
        )["recovery_codes"]
        # Re-authenticated as each of these asks (or is about to ask): the password, and a
        # code while MFA is on; recovery codes, as a TOTP code is good once in its 30 s.
        device = Authenticator(PUBLIC_URL)
        reauth = {"password": PASSWORD, "code": codes[0]}
        options = changed("POST", "/api/users/me/passkeys/options", reauth)
        created = changed(
            "POST",
            "/api/users/me/passkeys",
            {"credential": device.create(options), "name": "Ada's phone"},
        )
        changed(
            "DELETE",
            f"/api/users/me/passkeys/{created['id']}",
            {"password": PASSWORD, "code": codes[1]},
        )
        changed(
            "POST",
            "/api/users/me/mfa",
            {"action": "disable", "password": PASSWORD, "code": codes[2]},
        )
        changed(
            "PUT",
            "/api/users/me/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )

    notices = {
        "Two-step sign-in is on for your Tessera account": "was turned on",
        "A passkey was added to your Tessera account": 'A passkey named "Ada\'s phone"',
        "A passkey was removed from your Tessera account": 'The passkey named "Ada\'s phone"',
        "Two-step sign-in is off for your Tessera account": "was turned off",
        "Your Tessera password was changed": "password of your account was changed",
    }
    eventually(lambda: len(service.mails()) == 1 + len(notices))
    time.sleep(1.5)  # a second copy, were one coming, would be here by now
    mails = service.mails()
    subjects = [str(m["Subject"]) for m in mails]
    assert sorted(subjects) == sorted(["Verify your email address for Tessera", *notices])
    for message in mails[1:]:
        text = text_of(message)
        assert notices[str(message["Subject"])] in text, text
        assert f"Device: {DEVICE}" in text
        assert "IP address: 127.0.0.1" in text
        assert re.search(r"When: \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
        # Links from PUBLIC_URL, never from the Host header these requests carried.
        assert f"{PUBLIC_URL}/forgot-password" in text and f"{PUBLIC_URL}/account" in text
        assert "127.0.0.1:" not in text
