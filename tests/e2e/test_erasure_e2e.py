"""Erasure end to end, through real server processes: the embedded default (one `tessera serve`
on SQLite), and production's shape (`tessera serve`, `tessera projector` and `tessera worker` on
PostgreSQL and Redis, mail through a real SMTP server). A person uses the service, exports their
data, erases themselves; afterwards the service treats them as never registered, the trail still
verifies, and neither the database nor the logs written since hold any of their values."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pyotp
import pytest

from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import tessera
from tests.servers import PostgresCluster, _as_postgres, _pg_bin, free_port, wait_for_port
from tests.smtp import ScriptedHandler, SmtpServer

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a wholly different passphrase 2026"
# Distinctive, so that none turns up by chance in base64, a hash or a UUID.
EMAIL = "countess.lovelace.erasable@example.com"
USERNAME = "countess_lovelace_erasable"
DISPLAY_NAME = "Augusta Ada Erasable-Lovelace"
FIRST_NAME = "Provisional Countess Displayname"
USER_AGENT = "Erasable-Phone/7.1"
IP = "203.0.113.177"  # forwarded by the test, the trusted proxy
VALUES = (EMAIL, USERNAME, DISPLAY_NAME, FIRST_NAME, USER_AGENT, IP)
PHONE = {"User-Agent": USER_AGENT, "X-Forwarded-For": IP}


@dataclass
class Deployment:
    """The processes of one variant, their environment, where their mail and logs go, and how to
    read every byte the database holds."""

    env: dict[str, str]
    cwd: Path
    base: str
    mail_to: Callable[[str], list[str]]  # plain-text bodies of the mails sent to an address
    stored: Callable[[], dict[str, bytes]]  # every stored byte, by where it is
    logs: list[Path] = field(default_factory=list)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tessera(), *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )


def _start(stack: ExitStack, env: dict[str, str], cwd: Path, name: str) -> Path:
    """Starts `tessera NAME`, stopped when the stack closes; returns the file it logs to."""
    log = cwd / f"{name}.log"
    # To a file, not a pipe nobody reads: a full pipe would stop the server mid-log-line.
    with log.open("ab") as out:
        process = subprocess.Popen(
            [tessera(), name], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )

    def stop() -> None:
        process.terminate()
        process.wait(timeout=15)

    stack.callback(stop)
    return log


def _environment(tmp_path: Path, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        **FAST_ARGON2,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(tmp_path / "var"),
        "PUBLIC_URL": "https://auth.example.test",
        "TRUSTED_PROXIES": "127.0.0.0/8",  # the test is the proxy that forwards the phone's IP
        "LOG_LEVEL": "DEBUG",  # the most a deployment can log: none of it may name the person
    }
    for name in ("DATABASE_URL", "REDIS_URL", "LOG_FILE"):
        env.pop(name, None)
    return env


def _file_mail(mail_dir: Path) -> Callable[[str], list[str]]:
    def mail_to(address: str) -> list[str]:
        bodies = []
        for path in sorted(mail_dir.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == address:
                bodies.append(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        return bodies

    return mail_to


def _sqlite_files(data_dir: Path) -> Callable[[], dict[str, bytes]]:
    def stored() -> dict[str, bytes]:
        # The databases with their write-ahead logs and shared memory: every page ever written.
        return {str(p): p.read_bytes() for p in sorted(data_dir.rglob("*.sqlite*")) if p.is_file()}

    return stored


def _pg_dump(database_url: str) -> Callable[[], dict[str, bytes]]:
    def stored() -> dict[str, bytes]:
        dumped = subprocess.run(
            _as_postgres([_pg_bin("pg_dump"), "--no-owner", database_url]),
            capture_output=True,
            check=True,
            timeout=60,
        )
        return {"pg_dump": dumped.stdout}

    return stored


@pytest.fixture(params=["sqlite", "postgres+redis"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    port = free_port()
    env = _environment(tmp_path, port)
    with ExitStack() as stack:
        if request.param == "sqlite":
            made = Deployment(
                env,
                tmp_path,
                f"http://127.0.0.1:{port}",
                _file_mail(tmp_path / "var" / "mail"),
                _sqlite_files(tmp_path / "var"),
            )
            made.logs.append(_start(stack, env, tmp_path, "serve"))
        else:
            cluster: PostgresCluster = request.getfixturevalue("postgres")
            smtp = stack.enter_context(SmtpServer(ScriptedHandler()))
            env["DATABASE_URL"] = cluster.new_database()
            env["REDIS_URL"] = request.getfixturevalue("redis_url")
            env["MAIL_SERVER"], env["MAIL_PORT"] = "127.0.0.1", str(smtp.port)
            env["WORKER_METRICS_PORT"] = str(free_port())

            def smtp_mail(address: str) -> list[str]:
                return [
                    m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                    for m in smtp.handler.to(address)
                ]

            made = Deployment(
                env, tmp_path, f"http://127.0.0.1:{port}", smtp_mail, _pg_dump(env["DATABASE_URL"])
            )
            made.logs += [_start(stack, env, tmp_path, name) for name in ("serve", "projector")]
            made.logs.append(_start(stack, env, tmp_path, "worker"))
        wait_for_port(port, timeout=30)
        yield made


def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"timed out: {what}"
            return result
        time.sleep(0.1)


_USED: set[str] = set()  # verification tokens already taken from the mail


def verification_token(deployment: Deployment, address: str) -> str:
    """The token of the newest verification mail to the address (the one not used yet)."""

    def token() -> str | None:
        for body in deployment.mail_to(address):
            found = re.search(r"https://auth\.example\.test/verify-email\?token=([\w-]+)", body)
            if found and found.group(1) not in _USED:
                _USED.add(found.group(1))
                return found.group(1)
        return None

    found: str = eventually(token, what=f"a verification mail to {address}")
    return found


def registered_and_verified(
    http: httpx.Client, deployment: Deployment, address: str, username: str, **headers: str
) -> dict[str, Any]:
    registered = http.post(
        "/api/auth/register",
        json={"email": address, "username": username, "password": PASSWORD},
        headers=headers,
    )
    assert registered.status_code == 201, registered.text
    token = verification_token(deployment, address)
    verified = http.post("/api/auth/verify-email", json={"token": token}, headers=headers)
    assert verified.status_code == 200, verified.text
    return dict(registered.json())


def bearer(http: httpx.Client, login: str, password: str, **headers: str) -> dict[str, str]:
    answer = http.post(
        "/api/auth/login", json={"login": login, "password": password}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}", **headers}


def offsets(deployment: Deployment) -> dict[Path, int]:
    return {log: log.stat().st_size for log in deployment.logs}


def written_since(marks: dict[Path, int]) -> dict[Path, bytes]:
    written = {}
    for log, offset in marks.items():
        with log.open("rb") as file:
            file.seek(offset)
            written[log] = file.read()
    return written


def holding(stored: dict[str, bytes]) -> dict[str, list[str]]:
    """Which of the person's values each place holds, as plain UTF-8 bytes."""
    found = {where: [v for v in VALUES if v.encode() in data] for where, data in stored.items()}
    return {where: values for where, values in found.items() if values}


def audit_export(deployment: Deployment, output: Path) -> list[dict[str, Any]]:
    exported = deployment.run("audit", "export", "--output", str(output))
    assert exported.returncode == 0, exported.stderr
    checked = deployment.run("audit", "verify", str(output))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("ok: "), checked.stdout
    return [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]


def test_a_person_erased_through_the_api_is_forgotten_everywhere(
    deployment: Deployment, tmp_path: Path
) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=deployment.base, timeout=15) as http:
        # An operator, holding the admin and auditor roles, to look on from outside.
        registered_and_verified(
            http, deployment, "operator.on.duty@example.com", "operator_on_duty"
        )
        for role in ("admin", "auditor"):
            granted = deployment.run("admin", "grant-role", "operator_on_duty", role)
            assert granted.returncode == 0, granted.stderr
        admin = bearer(http, "operator_on_duty", PASSWORD)

        # The person: registers from a phone, verifies, names themselves, changes their
        # password, turns MFA on.
        person = registered_and_verified(http, deployment, EMAIL, USERNAME, **PHONE)
        auth = bearer(http, USERNAME, PASSWORD, **PHONE)
        for name in (FIRST_NAME, DISPLAY_NAME):
            updated = http.put("/api/users/me", json={"display_name": name}, headers=auth)
            assert updated.status_code == 200, updated.text
        changed = http.put(
            "/api/users/me/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=auth,
        )
        assert changed.status_code == 204, changed.text
        auth = bearer(http, EMAIL, NEW_PASSWORD, **PHONE)
        enrollment = http.post("/api/users/me/mfa", json={"action": "enable"}, headers=auth)
        assert enrollment.status_code == 200, enrollment.text
        totp = pyotp.TOTP(enrollment.json()["secret"])
        confirmed = http.post(
            "/api/users/me/mfa", json={"action": "confirm", "code": totp.now()}, headers=auth
        )
        assert confirmed.status_code == 200, confirmed.text
        me = http.get("/api/users/me", headers=auth).json()
        assert me["id"] == person["id"]
        assert (me["email"], me["username"], me["display_name"]) == (
            EMAIL,
            USERNAME,
            DISPLAY_NAME,
        )

        # Everything held about them, in one document.
        exported = http.get("/api/users/me/export", headers=auth)
        assert exported.status_code == 200, exported.text
        document = exported.json()
        assert set(document) == {"format", "exported_at", "account", "sessions", "events", "mails"}
        text = exported.text
        for value in VALUES:
            assert value in text, value
        assert document["account"]["email"] == EMAIL
        assert any(s["user_agent"] == USER_AGENT and s["ip"] == IP for s in document["sessions"])
        types = {e["type"] for e in document["events"]}
        assert {"Registered", "ProfileUpdated", "PasswordChanged", "MfaEnabled"} <= types
        assert {"SessionStarted"} <= types
        # Mail is sent asynchronously: the ledger may not have them all at the first look.
        assert {"verification"} <= {m["kind"] for m in document["mails"]}
        assert all(m["to"] == EMAIL for m in document["mails"])

        # Bad input erases nothing: the wrong password, a missing or wrong code; an admin's
        # erasure of no one, and a non-admin's erasure of anyone.
        activity = http.get("/api/users/me/activity", headers=auth).json()["entries"]
        wrong = http.request(
            "DELETE",
            "/api/users/me",
            json={"password": "not my password", "code": totp.now()},
            headers=auth,
        )
        assert (wrong.status_code, wrong.json()["code"]) == (403, "invalid_current_password")
        for code in (None, "000000"):
            body = {"password": NEW_PASSWORD} | ({"code": code} if code else {})
            refused = http.request("DELETE", "/api/users/me", json=body, headers=auth)
            assert (refused.status_code, refused.json()["code"]) == (401, "invalid_mfa_code")
        nobody = http.delete(f"/api/admin/accounts/{uuid4()}", headers=admin)
        assert nobody.status_code == 404, nobody.text
        forbidden = http.delete(f"/api/admin/accounts/{me['id']}", headers=auth)
        assert (forbidden.status_code, forbidden.json()["code"]) == (403, "forbidden")
        assert http.get("/api/users/me", headers=auth).json() == me
        # Each wrong guess is recorded (LoginFailed, counted towards the lock), nothing else.
        after = http.get("/api/users/me/activity", headers=auth).json()["entries"]
        assert [e for e in after if e["type"] != "LoginFailed"] == activity

        before = audit_export(deployment, tmp_path / "before.jsonl")

        # The erasure itself: the password and a code of the next step (the current one was
        # spent confirming MFA, and the server allows one step of drift).
        # Sent from the test itself, not the phone: a request's own access line names the
        # address it came from, which is not the erased person's stored data.
        token_only = {"Authorization": auth["Authorization"]}
        marks = offsets(deployment)
        erased = http.request(
            "DELETE",
            "/api/users/me",
            json={"password": NEW_PASSWORD, "code": totp.at(time.time() + 30)},
            headers=token_only,
        )
        assert erased.status_code == 204, erased.text
        assert http.get("/api/users/me", headers=token_only).status_code == 401

        # The read models catch up: the admin's listing and the auditor's trail show it.
        def listed_and_audited() -> bool:
            listing = http.get("/api/admin/accounts", params={"q": EMAIL}, headers=admin)
            trail = http.get(
                "/api/audit/events",
                params={"account_id": me["id"], "type": "AccountErased"},
                headers=admin,
            )
            return listing.json()["accounts"] == [] and bool(trail.json()["entries"])

        eventually(listed_and_audited, what="the read models to apply the erasure")
        # No stored byte holds a value of the person's (sessions, WAL pages and all).
        eventually(
            lambda: holding(deployment.stored()) == {}, what=f"{holding(deployment.stored())}"
        )
        # Nor does any mail kept as a file (the embedded default's drop); others' mails stay.
        drop = Path(deployment.env["DATA_DIR"]) / "mail"
        if not deployment.env.get("MAIL_SERVER"):
            assert holding({str(p): p.read_bytes() for p in drop.iterdir()}) == {}
            assert deployment.mail_to("operator.on.duty@example.com")

        # The old login fails exactly as for someone who never registered.
        old = http.post("/api/auth/login", json={"login": EMAIL, "password": NEW_PASSWORD})
        unknown = http.post(
            "/api/auth/login",
            json={"login": "never.registered.anyone@example.com", "password": NEW_PASSWORD},
        )
        assert (old.status_code, old.json()) == (unknown.status_code, unknown.json())
        assert old.status_code == 401

        # The trail still verifies, before and after, and the two agree line by line.
        after = audit_export(deployment, tmp_path / "after.jsonl")
        assert len(after) > len(before)
        assert [line["hash"] for line in after[: len(before)]] == [line["hash"] for line in before]
        assert "AccountErased" in {line["type"] for line in after}
        after_text = (tmp_path / "after.jsonl").read_text(encoding="utf-8")
        assert [v for v in VALUES if v in after_text] == []

        # Nothing any process logged since the erasure names the person.
        for log, written in written_since(marks).items():
            assert [v for v in VALUES if v.encode() in written] == [], log

        # The email and username are free: the same ones register a new account.
        again = registered_and_verified(http, deployment, EMAIL, USERNAME)
        assert again["id"] != me["id"]
        assert bearer(http, USERNAME, PASSWORD)
        # An administrator's erasure of the newcomer, over HTTP too.
        removed = http.delete(f"/api/admin/accounts/{again['id']}", headers=admin)
        assert removed.status_code == 204, removed.text
        gone = http.post("/api/auth/login", json={"login": USERNAME, "password": PASSWORD})
        assert (gone.status_code, gone.json()) == (unknown.status_code, unknown.json())
    print(f"\nthe flow took {time.monotonic() - started:.1f} s")
