"""End to end: `tessera audit ...` as real processes, on a store filled through the use cases."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from application.views import Client
from domain.account import Account
from domain.errors import InvalidCredentials
from interfaces.container import build
from interfaces.settings import load_settings
from tests.application.test_use_cases import PASSWORD, verified
from tests.conftest import FAST_ARGON2, FakeClock
from tests.e2e.test_serve import tessera
from tests.servers import PostgresCluster


@dataclass
class Store:
    env: dict[str, str]
    cwd: Path
    account_id: str
    registered_at: str
    secrets: list[str]  # hashes and sealed values from the raw events

    def audit(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tessera(), "audit", *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=check,
        )


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    environ = {"DATA_DIR": str(tmp_path / "var"), **FAST_ARGON2}
    if request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        environ["DATABASE_URL"] = cluster.new_database()
    container = build(load_settings(environ), clock=FakeClock())
    container.mail_broker.start_worker(threads=1, poll_ms=20)  # delivers the verification mail
    try:
        verified(container)
        ada = container.log.account_for_login("ada")
        assert ada is not None
        container.login.log_in("ada", PASSWORD, Client(ip="203.0.113.7", user_agent="curl/8"))
        container.profile.update(ada.id, "Ada Lovelace")
        with pytest.raises(InvalidCredentials):
            container.login.log_in("ada", "not the password", Client())
        account = container.log.find(ada.id, Account)
        assert account is not None
        secrets = [account.password_hash]
        notifications = container.log.recorder.select_notifications(start=1, limit=1000)
        for notification in notifications:
            state = vars(container.log.mapper.to_domain_event(notification))
            secrets += [v for k, v in state.items() if "hash" in k or "sealed" in k]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        yield Store(
            env={**env, **environ},
            cwd=tmp_path,
            account_id=str(ada.id),
            registered_at=ada.created_on.isoformat(),
            secrets=[s for s in secrets if isinstance(s, str) and s],
        )
    finally:
        container.close()


def test_export_then_verify_round_trips_and_finds_an_edited_or_removed_line(
    store: Store, tmp_path: Path
) -> None:
    exported = store.audit("export", "--format", "jsonl", check=True)
    assert exported.stderr == ""  # no progress to a pipe, and no log line anywhere near stdout
    lines = exported.stdout.splitlines()
    assert len(lines) >= 6
    assert [json.loads(line)["type"] for line in lines][:2] == [
        "Registered",
        "EmailVerificationRequested",
    ]
    output = tmp_path / "trail.jsonl"
    store.audit("export", "--output", str(output), check=True)
    assert output.read_text(encoding="utf-8") == exported.stdout
    assert not output.with_name("trail.jsonl.partial").exists()

    verified_ok = store.audit("verify", str(output))
    assert verified_ok.returncode == 0
    assert verified_ok.stdout.splitlines()[0] == f"ok: {len(lines)} lines"

    edited = lines.copy()
    edited[2] = edited[2].replace('"outcome":"success"', '"outcome":"failure"')
    assert edited != lines
    output.write_text("\n".join(edited) + "\n", encoding="utf-8")
    refused = store.audit("verify", str(output))
    assert refused.returncode == 1
    assert refused.stdout.startswith("bad line 3: ")

    output.write_text("\n".join(lines[:1] + lines[2:]) + "\n", encoding="utf-8")
    refused = store.audit("verify", str(output))
    assert (refused.returncode, refused.stdout.split(":")[0]) == (1, "bad line 2")


def test_an_export_since_an_instant_verifies_on_its_own(store: Store) -> None:
    whole = store.audit("export", check=True).stdout.splitlines()
    since = json.loads(whole[3])["time"]
    part = store.audit("export", "--since", since, check=True).stdout.splitlines()
    assert [json.loads(line)["position"] for line in part] == [
        json.loads(line)["position"] for line in whole[3:]
    ]
    assert json.loads(part[0])["prev"] == "0" * 64
    checked = subprocess.run(
        [tessera(), "audit", "verify", "-"],
        input="\n".join(part) + "\n",
        env=store.env,
        cwd=store.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and checked.stdout.startswith(f"ok: {len(part)} lines")


def test_state_as_of_an_instant_by_id_or_login(store: Store) -> None:
    at_registration = store.audit(
        "state", "--account", "ada", "--as-of", store.registered_at, check=True
    )
    state = json.loads(at_registration.stdout)
    assert (state["id"], state["email_verified"], state["version"]) == (
        store.account_id,
        False,
        1,
    )
    now = store.audit(
        "state", "--account", store.account_id, "--as-of", "2100-01-01T00:00:00Z", check=True
    )
    state = json.loads(now.stdout)
    assert (state["email_verified"], state["display_name"], state["failed_logins"]) == (
        True,
        "Ada Lovelace",
        1,
    )
    assert state["as_of"] == "2100-01-01T00:00:00+00:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["state", "--account", "nobody", "--as-of", "2100-01-01"], "no account"),
        (["state", "--account", "ada", "--as-of", "2000-01-01T00:00:00Z"], "not registered yet"),
        (["state", "--account", "ada", "--as-of", "yesterday"], "not an ISO 8601 time"),
        (["replay", "--account", "00000000-0000-0000-0000-000000000000"], "no account"),
        (["export", "--since", "soon"], "not an ISO 8601 time"),
        (["verify", "/no/such/file"], "cannot read"),
        (["export", "--output", "/no/such/directory/trail.jsonl"], "cannot write"),
    ],
)
def test_bad_input_is_named_on_stderr_with_exit_code_2(
    store: Store, args: list[str], message: str
) -> None:
    result = store.audit(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_replay_shows_each_event_on_a_line_and_no_secret(store: Store) -> None:
    text = store.audit("replay", "--account", "ada@example.com", check=True).stdout
    lines = text.splitlines()
    assert lines[0].split("  ")[1] == "Registered"
    assert 'display_name="Ada Lovelace"' in text
    assert any("LoginFailed" in line and "factor=password" in line for line in lines)
    jsonl = store.audit("replay", "--account", "ada", "--format", "jsonl", check=True).stdout
    entries = [json.loads(line) for line in jsonl.splitlines()]
    assert [e["type"] for e in entries] == [line.split("  ")[1] for line in lines]
    assert [e["version"] for e in entries] == list(range(1, len(entries) + 1))
    exported = store.audit("export", check=True).stdout
    state = store.audit("state", "--account", "ada", "--as-of", "2100-01-01", check=True).stdout
    assert store.secrets and any(s.startswith("$argon2id$") for s in store.secrets)
    for output in (text, jsonl, exported, state):
        assert [s for s in store.secrets if s in output] == []
        assert PASSWORD not in output


def test_long_commands_show_progress_on_a_terminal_only(store: Store, tmp_path: Path) -> None:
    """Export, replay and rebuild draw done, rate and time left on a terminal's stderr; to a
    pipe they write nothing there (the export test above)."""
    import pty

    for command in (
        ["audit", "export", "--output", str(tmp_path / "trail.jsonl")],
        ["audit", "replay", "--account", "ada"],
        ["projector", "rebuild", "audit_log"],
    ):
        master, terminal = pty.openpty()
        try:
            done = subprocess.run(
                [tessera(), *command],
                env=store.env,
                cwd=store.cwd,
                stdout=subprocess.PIPE,
                stderr=terminal,
                timeout=60,
                check=True,
            )
            os.close(terminal)
            drawn = b""
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the terminal's other end is closed: all was read
                    break
                if not chunk:
                    break
                drawn += chunk
        finally:
            os.close(master)
        assert b"events/s" in drawn, command
        assert b"events/s" not in done.stdout
