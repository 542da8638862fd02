"""The full flow against a real server at DEBUG level: every log line, on stdout and in LOG_FILE,
is a valid Elastic Common Schema document with the request it belongs to, and no password, token,
secret or code appears anywhere in them."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pyotp

from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import tessera, wait_for_mail
from tests.ecs_schema import flatten, problems
from tests.servers import free_port, wait_for_port

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "an entirely new passphrase"


def test_no_secret_reaches_the_logs(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    env = {
        **os.environ,
        **FAST_ARGON2,
        "PORT": str(port),
        "DATA_DIR": str(data),
        "LOG_LEVEL": "DEBUG",
        "LOG_FILE": str(tmp_path / "tessera.log"),
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    stdout = tmp_path / "stdout.log"
    with stdout.open("wb") as out:
        process = subprocess.Popen(
            [tessera(), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    secrets: list[str] = [PASSWORD, NEW_PASSWORD, "wrong password!"]
    try:
        wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            http.post(
                "/api/auth/register",
                json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
            )
            verification = re.search(
                r"token=([\w-]+)", wait_for_mail(data / "mail", "ada@example.com")
            )
            assert verification
            secrets.append(verification.group(1))
            http.post("/api/auth/verify-email", json={"token": verification.group(1)})
            http.post("/api/auth/login", json={"login": "ada", "password": "wrong password!"})
            tokens = http.post(
                "/api/auth/login", json={"login": "ada", "password": PASSWORD}
            ).json()
            secrets += [tokens["access_token"], tokens["refresh_token"]]
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}

            enrollment = http.post(
                "/api/users/me/mfa", headers=auth, json={"action": "enable"}
            ).json()
            totp = pyotp.TOTP(enrollment["secret"])
            code = totp.now()
            confirmed = http.post(
                "/api/users/me/mfa", headers=auth, json={"action": "confirm", "code": code}
            ).json()
            secrets += [enrollment["secret"], code, *confirmed["recovery_codes"]]
            challenge = http.post(
                "/api/auth/login", json={"login": "ada", "password": PASSWORD}
            ).json()
            secrets.append(challenge["mfa_token"])
            recovery = confirmed["recovery_codes"][0]
            finished = http.post(
                "/api/auth/login/mfa", json={"mfa_token": challenge["mfa_token"], "code": recovery}
            ).json()
            secrets += [finished["access_token"], finished["refresh_token"]]
            refreshed = http.post(
                "/api/auth/refresh", json={"refresh_token": finished["refresh_token"]}
            ).json()
            secrets += [refreshed["access_token"], refreshed["refresh_token"]]

            http.post("/api/auth/forgot-password", json={"email": "ada@example.com"})
            mail_dir = data / "mail"
            resets = [
                p.read_text()
                for p in mail_dir.glob("*.eml")
                if "reset-password?token=" in p.read_text()
            ]
            for _ in range(100):
                if resets:
                    break
                import time

                time.sleep(0.05)
                resets = [
                    p.read_text()
                    for p in mail_dir.glob("*.eml")
                    if "reset-password?token=" in p.read_text()
                ]
            reset = re.search(r"reset-password\?token=([\w-]+)", resets[0])
            assert reset
            secrets.append(reset.group(1))
            answer = http.post(
                "/api/auth/reset-password",
                json={"token": reset.group(1), "new_password": NEW_PASSWORD},
            )
            assert answer.status_code == 204
            # A mistaken client putting a token in the query string must not log it either.
            http.get(f"/api/users/me?access_token={refreshed['access_token']}")
    finally:
        process.terminate()
        process.wait(timeout=10)

    printed, written = stdout.read_text(), (tmp_path / "tessera.log").read_text()
    # The same lines (two threads may reach the two handlers in different orders).
    assert sorted(printed.splitlines()) == sorted(written.splitlines())
    logs = printed + written
    assert not [line for line in logs.splitlines() if line.strip() and not line.startswith("{")]
    lines = [flatten(json.loads(line)) for line in printed.splitlines()]
    for line in lines:
        assert problems(line) == [], line

    requests = [line for line in lines if line["log.logger"] == "tessera.access"]
    assert len(requests) == 12, "one access line per request of the flow"
    for line in requests:
        assert line["message"] == "request"
        assert re.fullmatch(r"[0-9a-f]{32}", line["http.request.id"])
        assert line["client.ip"] == "127.0.0.1"
        assert line["http.request.method"] in {"GET", "POST"}
        assert line["event.duration"] > 0
    assert {line["url.path"] for line in requests} >= {
        "/api/auth/login",
        "/api/auth/login/mfa",
        "/api/users/me/mfa",
        "/api/users/me",  # the template, without the query string the client added
    }
    assert any(line.get("user.id") for line in requests)
    refused = [line for line in requests if line["url.path"] == "/api/auth/login"]
    assert {(line["event.outcome"], line.get("event.reason")) for line in refused} >= {
        ("success", None),
        ("failure", "invalid_credentials"),
    }
    assert {line["http.response.status_code"] for line in refused} >= {200, 401}

    security = {
        line["event.action"]: line for line in lines if line["log.logger"] == "tessera.security"
    }
    assert set(security) >= {
        "Registered",
        "LoginFailed",
        "SessionStarted",
        "MfaEnabled",
        "RecoveryCodeUsed",
        "SessionRefreshed",
        "PasswordResetRequested",
        "PasswordChanged",
    }
    assert security["LoginFailed"]["event.outcome"] == "failure"
    assert "authentication" in security["LoginFailed"]["event.category"]
    assert security["SessionStarted"]["user.id"] == security["Registered"]["user.id"]
    # A refresh names no account: its session ties it to the sign-in that started it.
    session = security["SessionStarted"]["tessera.session.id"]
    assert security["SessionRefreshed"]["tessera.session.id"] == session
    for secret in secrets:
        assert secret not in logs, f"a secret reached the logs: {secret[:6]}..."
