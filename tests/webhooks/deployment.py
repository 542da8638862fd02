"""A running tessera for the webhook flows, shared by a module's tests: the embedded default (one
`tessera serve` on SQLite), or production's shape (`tessera serve`, `tessera projector` and
`tessera worker` on PostgreSQL and Redis, mail through a real SMTP server). Every setting at its
default but WEBHOOK_ALLOW_HTTP_LOOPBACK (the receivers are on 127.0.0.1, over http) and the rate
limits (one test client registers many people from one address).

Each test makes its own people and endpoints and reads only its own people's deliveries (an
endpoint gets every account's events), so the tests of a module share one deployment."""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import tessera
from tests.servers import PostgresCluster, RedisServer, free_port, start_redis, wait_for_port
from tests.smtp import ScriptedHandler, SmtpServer
from tests.webhooks.receiver import Delivery

PASSWORD = "correct horse battery staple"
_PEOPLE = count(1)

Json = dict[str, Any]


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"timed out after {timeout} s: {what}"
            return result
        time.sleep(0.1)


@dataclass
class Person:
    id: str
    email: str
    username: str
    auth: dict[str, str] = field(default_factory=dict)


@dataclass
class Deployment:
    kind: str  # "sqlite" or "postgres+redis"
    env: dict[str, str]
    cwd: Path
    base: str
    mail_to: Callable[[str], list[str]]  # plain-text bodies of the mails sent to an address
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)  # an admin's Authorization header
    admin_email: str = ""
    redis: RedisServer | None = None  # production's shape only
    endpoints: list[str] = field(default_factory=list)  # made by the running test
    _used_tokens: set[str] = field(default_factory=set)

    @property
    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=20)

    # The processes.

    def start(self, name: str, *command: str) -> None:
        with (self.cwd / f"{name}.log").open("ab") as log:
            # A group of its own: kill() takes the process and any child, as a container dies.
            self.processes[name] = subprocess.Popen(
                [tessera(), *command],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        """kill -9, at whatever moment the process is in."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tessera(), *args], env=self.env, cwd=self.cwd, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip

    def recorded(self, endpoint_id: str) -> int:
        """Deliveries to the endpoint in the ledger (PostgreSQL), sent or not."""
        import psycopg

        with psycopg.connect(self.env["DATABASE_URL"]) as conn:
            row = conn.execute(
                "SELECT count(*) FROM tessera_webhook_deliveries WHERE endpoint_id = %s",
                (endpoint_id,),
            ).fetchone()
        return int(row[0]) if row else 0

    # People.

    def verification_token(self, address: str) -> str:
        def token() -> str | None:
            for body in self.mail_to(address):
                found = re.search(r"https://auth\.example\.test/verify-email\?token=([\w-]+)", body)
                if found and found.group(1) not in self._used_tokens:
                    self._used_tokens.add(found.group(1))
                    return found.group(1)
            return None

        found: str = eventually(token, what=f"a verification mail to {address}")
        return found

    def register(self, name: str = "", verify: bool = True, sign_in: bool = True) -> Person:
        """A new person (a unique username from `name`), verified and signed in as asked."""
        n = next(_PEOPLE)
        username = f"{name or 'person'}_{os.getpid()}_{n}"
        address = f"{username}@example.com"
        with self.http as http:
            made = http.post(
                "/api/auth/register",
                json={"email": address, "username": username, "password": PASSWORD},
            )
            assert made.status_code == 201, made.text
            person = Person(str(made.json()["id"]), address, username)
            if verify:
                verified = http.post(
                    "/api/auth/verify-email", json={"token": self.verification_token(address)}
                )
                assert verified.status_code == 200, verified.text
            if sign_in:
                person.auth = self.sign_in(username)
        return person

    def sign_in(self, login: str, password: str = PASSWORD) -> dict[str, str]:
        with self.http as http:
            answer = http.post("/api/auth/login", json={"login": login, "password": password})
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    # Endpoints, as an admin manages them over the API.

    def endpoint(
        self, url: str, events: list[str] | None = None, include_personal: bool = False
    ) -> tuple[str, str]:
        """A new endpoint for `events` (every public type by default): its id and secret."""
        from domain.webhook_events import CATALOGUE

        with self.http as http:
            made = http.post(
                "/api/admin/webhooks",
                json={
                    "url": url,
                    "events": events or sorted(CATALOGUE),
                    "description": "a test's receiver",
                    "include_personal": include_personal,
                },
                headers=self.admin,
            )
        assert made.status_code == 201, made.text
        body = made.json()
        assert str(body["secret"]).startswith("whsec_"), body
        self.endpoints.append(str(body["id"]))
        return str(body["id"]), str(body["secret"])

    def remove_endpoints(self) -> None:
        """Those the test made: their receivers are closed, and the next test's people are
        none of their business."""
        while self.endpoints:
            removed = self.admin_call("DELETE", f"/{self.endpoints.pop()}")
            assert removed.status_code in (200, 204, 404), removed.text

    def admin_call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.http as http:
            return http.request(method, f"/api/admin/webhooks{path}", headers=self.admin, **kwargs)

    def deliveries(self, endpoint_id: str) -> list[Json]:
        answer = self.admin_call("GET", f"/{endpoint_id}/deliveries")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        listed: list[Json] = body["deliveries"] if isinstance(body, dict) else body
        return listed


def of(person: Person, deliveries: list[Delivery]) -> list[Delivery]:
    """The deliveries about one person (each body's data names its account)."""
    return [d for d in deliveries if d.payload["data"].get("account_id") == person.id]


def types(deliveries: list[Delivery]) -> list[str]:
    return [d.type for d in deliveries]


def _file_mail(mail_dir: Path) -> Callable[[str], list[str]]:
    def mail_to(address: str) -> list[str]:
        bodies = []
        for path in sorted(mail_dir.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == address:
                bodies.append(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        return bodies

    return mail_to


@contextmanager
def deployed(kind: str, directory: Path, postgres: PostgresCluster | None) -> Iterator[Deployment]:
    """A deployment of `kind` in `directory`, with an admin signed in; stopped at the end."""
    port = free_port()
    env = {
        **os.environ,
        **FAST_ARGON2,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_DIR": str(directory / "var"),
        "PUBLIC_URL": "https://auth.example.test",
        "RATE_LIMITS_ENABLED": "false",
        "WEBHOOK_ALLOW_HTTP_LOOPBACK": "true",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "LOG_FILE", "MAIL_SERVER"):
        env.pop(name, None)
    with ExitStack() as stack:
        if kind == "sqlite":
            made = Deployment(
                kind, env, directory, f"http://127.0.0.1:{port}", _file_mail(directory / "var/mail")
            )
            stack.callback(made.stop_all)
            made.start("serve", "serve")
        else:
            assert postgres is not None
            redis_server = start_redis()
            stack.callback(redis_server.stop)
            smtp = stack.enter_context(SmtpServer(ScriptedHandler()))
            env["DATABASE_URL"] = postgres.new_database()
            env["REDIS_URL"] = redis_server.url
            env["MAIL_SERVER"], env["MAIL_PORT"] = "127.0.0.1", str(smtp.port)
            env["WORKER_METRICS_PORT"] = str(free_port())

            def smtp_mail(address: str) -> list[str]:
                return [
                    m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                    for m in smtp.handler.to(address)
                ]

            made = Deployment(
                kind, env, directory, f"http://127.0.0.1:{port}", smtp_mail, redis=redis_server
            )
            stack.callback(made.stop_all)
            for name in ("serve", "projector", "worker"):
                made.start(name, name)
        wait_for_port(port, timeout=30)
        operator = made.register("operator", sign_in=False)
        granted = made.run("admin", "grant-role", operator.username, "admin")
        assert granted.returncode == 0, granted.stdout + granted.stderr
        made.admin = made.sign_in(operator.username)
        made.admin_email = operator.email
        yield made
