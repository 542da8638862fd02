"""Tessera as the OpenID Provider the relying parties sign in with: a real deployment (the
embedded default, or PostgreSQL + Redis with `serve`, `projector` and `worker`), its clients made
with `tessera admin client create`, and people registered through its API with the link mailed
to them. The browser steps a person takes on tessera's pages (sign in, consent) are here too."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_serve import tessera, wait_for_mail

PASSWORD = "correct horse battery staple"


@dataclass
class Provider:
    base: str  # http://localhost:PORT: a passkey's RP ID must be a domain name
    env: dict[str, str]
    cwd: Path
    _admin: tuple[str, str] | None = None

    def run(self, *args: str) -> str:
        """`tessera ARGS` against this deployment's stores; what it printed."""
        done = subprocess.run(
            [tessera(), *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def client(self, name: str, **fields: Any) -> dict[str, Any]:
        """A client registered by an admin (POST /api/admin/clients: what `tessera admin client
        create` does, without a process start each): {client_id, client_secret, ...}."""
        if self._admin is None:
            login, password = self.person()
            self.run("admin", "grant-role", login, "admin")
            self._admin = (login, password)
        login, password = self._admin
        with httpx.Client(base_url=self.base, timeout=15) as http:
            signed_in = http.post("/api/auth/login", json={"login": login, "password": password})
            assert signed_in.status_code == 200, signed_in.text
            made = http.post(
                "/api/admin/clients",
                json={"name": name, **fields},
                headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"},
            )
            assert made.status_code == 201, made.text
        registered: dict[str, Any] = made.json()
        return registered

    def person(self) -> tuple[str, str]:
        """A new person with a verified address: (email, password)."""
        name = f"p{secrets.token_hex(4)}"
        address = f"{name}@example.com"
        with httpx.Client(base_url=self.base, timeout=15) as http:
            registered = http.post(
                "/api/auth/register",
                json={"email": address, "username": name, "password": PASSWORD},
            )
            assert registered.status_code == 201, registered.text
            text = wait_for_mail(Path(self.env["DATA_DIR"]) / "mail", address, timeout=20)
            match = re.search(r"/verify-email\?token=([A-Za-z0-9_-]+)", text)
            assert match, text
            verified = http.post("/api/auth/verify-email", json={"token": match.group(1)})
            assert verified.status_code == 200, verified.text
        return address, PASSWORD


@contextlib.contextmanager
def deployed(tmp_path: Path, stores: dict[str, str] | None, **settings: str) -> Iterator[Provider]:
    """tessera serving on localhost (with a projector and a worker when `stores` are given)."""
    from tests.browser.test_pages_in_browser import serve

    for base, data_dir in serve(tmp_path, stores, **settings):
        env = {**_cli_environment(), "DATA_DIR": str(data_dir), **(stores or {})}
        yield Provider(base, env, tmp_path)


def _cli_environment() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL", "LOG_FILE", "MAIL_SERVER"):
        env.pop(name, None)
    return env


def sign_in_and_consent(page: Any, login: str, password: str) -> bool:
    """On tessera's sign-in page (where an app sent the browser): the password; then the
    consent page, if the app is not trusted. Whether tessera asked for consent."""
    page.wait_for_selector("#login")
    page.fill("#login", login)
    page.fill("#password", password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    return consent(page)


def consent(page: Any) -> bool:
    """Allows the app, if tessera asks (its consent page); whether it asked."""
    page.wait_for_load_state()
    allow = page.get_by_role("button", name="Allow", exact=True)
    if not allow.count():
        return False
    assert "asks to" in page.inner_text("main")
    allow.click()
    return True
