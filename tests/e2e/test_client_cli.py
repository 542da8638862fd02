"""An operator registers, lists and removes OpenID Provider clients with `tessera admin client`,
as processes, on the embedded default: the secret printed once, and only then."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from interfaces.container import build
from interfaces.settings import load_settings
from tests.e2e.test_serve import tessera


def test_an_operator_registers_lists_and_removes_clients_from_the_command_line(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "var")}
    for name in ("DATABASE_URL", "REDIS_URL", "LOG_FILE"):
        env.pop(name, None)
    build(load_settings({"DATA_DIR": env["DATA_DIR"]})).close()  # the store a server made

    def client(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tessera(), "admin", "--operator", "cli:ops", "client", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = client(
        "create",
        "Grafana",
        "--redirect-uri",
        "https://grafana.example/login/generic_oauth",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--post-logout-redirect-uri",
        "https://grafana.example/",
        "--grant",
        "authorization_code",
        "--grant",
        "refresh_token",
        "--scope",
        "openid",
        "--scope",
        "offline_access",
        "--trusted",
        "--resource",
        "https://api.example/",
        "--id-token-alg",
        "EdDSA",
    )
    assert made.returncode == 0, made.stderr
    issued = json.loads(made.stdout)
    assert set(issued) == {"client_id", "client_secret"} and len(issued["client_secret"]) >= 43
    spa = client("create", "SPA", "--redirect-uri", "https://spa.example/cb", "--public")
    assert spa.returncode == 0, spa.stderr
    assert json.loads(spa.stdout)["client_secret"] is None

    refused = client("create", "Evil", "--redirect-uri", "http://evil.example/cb")
    assert refused.returncode == 2 and "redirect_uris" in refused.stderr
    refused = client("create", "Pub", "--redirect-uri", "https://a.example/", "--public",
                     "--grant", "client_credentials")  # fmt: skip
    assert refused.returncode == 2 and "grant_types" in refused.stderr

    listed = client("list")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["Grafana", "SPA"]
    grafana = rows[0]
    assert grafana["client_id"] == issued["client_id"] and grafana["trusted"] is True
    assert grafana["grant_types"] == ["authorization_code", "refresh_token"]
    assert grafana["scopes"] == ["openid", "offline_access"]
    assert grafana["resources"] == ["https://api.example/"]
    assert grafana["id_token_signed_response_alg"] == "EdDSA"
    assert grafana["web_origins"] == ["https://grafana.example", "http://127.0.0.1"]
    assert issued["client_secret"] not in listed.stdout + listed.stderr

    container = build(load_settings({"DATA_DIR": env["DATA_DIR"]}))
    try:
        container.clients.authenticate(issued["client_id"], issued["client_secret"])
    finally:
        container.close()

    removed = client("remove", issued["client_id"])
    assert removed.returncode == 0, removed.stderr
    again = client("remove", issued["client_id"])
    assert again.returncode == 2 and "no client" in again.stderr
    assert [json.loads(line)["name"] for line in client("list").stdout.splitlines()] == ["SPA"]
