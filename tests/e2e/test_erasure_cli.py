"""An operator exports and erases a person with the `tessera admin` commands, as processes, on
the embedded default: what the commands print, what they refuse, and what the files hold after."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from domain.account import Account
from interfaces.container import build
from interfaces.settings import Settings
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import tessera

EMAIL = "operator.erased.countess@example.com"
USERNAME = "operator_erased_countess"
DISPLAY_NAME = "Countess Erased By Operator"
VALUES = (EMAIL, USERNAME, DISPLAY_NAME)


def test_an_operator_exports_then_erases_a_person_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "var"
    fast = {name.lower(): int(value) for name, value in FAST_ARGON2.items()}
    container = build(Settings(data_dir=str(data), **fast))  # type: ignore[arg-type]
    try:
        account_id = container.registration.register(EMAIL, USERNAME, PASSWORD).id
        container.profile.update(account_id, DISPLAY_NAME)
    finally:
        container.close()
    env = {**os.environ, **FAST_ARGON2, "DATA_DIR": str(data)}
    for name in ("DATABASE_URL", "REDIS_URL", "LOG_FILE"):
        env.pop(name, None)

    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tessera(), "admin", *args], env=env, capture_output=True, text=True, timeout=60
        )

    exported = tmp_path / "ada.json"
    assert admin("export", USERNAME, "--output", str(exported)).returncode == 0
    document = json.loads(exported.read_text())
    assert document["account"]["email"] == EMAIL
    assert document["account"]["display_name"] == DISPLAY_NAME
    assert {"Registered", "EmailVerificationRequested", "ProfileUpdated"} <= {
        e["type"] for e in document["events"]
    }

    refused = admin("erase", EMAIL)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    erased = admin("erase", EMAIL, "--yes")
    assert erased.returncode == 0, erased.stderr
    assert f"erased account {account_id}" in erased.stdout
    again = admin("erase", str(account_id), "--yes")
    assert again.returncode == 2 and "no account" in again.stderr
    assert admin("export", EMAIL).returncode == 2

    # The command caught the read models up itself (no server was running) and scrubbed them.
    for path in sorted(data.rglob("*.sqlite*")):
        held = path.read_bytes()
        for value in VALUES:
            assert value.encode() not in held, (path.name, value)
    container = build(Settings(data_dir=str(data)))
    try:
        assert container.log.find(account_id, Account) is None
        assert container.log.keys.forgotten([account_id]) == {account_id}
    finally:
        container.close()
