"""End to end: an operator's command run where no store is refuses, and makes nothing there;
only the services make a store (and its keys) on first start, and say so."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from interfaces.container import build
from interfaces.settings import load_settings
from tests.e2e.test_serve import serving, tessera
from tests.servers import PostgresCluster

# What would point a command at some store other than the folder it runs in.
_STORE_SETTINGS = (
    "DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "JWT_PRIVATE_KEY",
    "JWT_PRIVATE_KEY_FILE",
    "LOG_FILE",
)

READING_COMMANDS = [
    ["audit", "export"],
    ["audit", "replay", "--account", "ada"],
    ["admin", "list"],
    ["admin", "grant-role", "ada", "admin"],
    ["admin", "rekey"],
    ["projector", "rebuild", "accounts"],
]


def run(args: list[str], cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _STORE_SETTINGS}
    return subprocess.run(
        [tessera(), *args],
        env={**env, **settings},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", READING_COMMANDS, ids=" ".join)
def test_a_reading_command_in_an_empty_folder_refuses_and_leaves_it_empty(
    command: list[str], tmp_path: Path
) -> None:
    done = run(command, tmp_path)
    assert done.returncode != 0, done.stdout
    assert "no store at" in done.stderr
    assert "DATA_DIR" in done.stderr
    assert str((tmp_path / "var" / "tessera.sqlite").resolve()) in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_reading_command_on_an_empty_database_refuses_and_creates_no_table(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.new_database()
    done = run(["admin", "list"], tmp_path, DATABASE_URL=url)
    assert done.returncode != 0
    assert "DATABASE_URL" in done.stderr
    assert url.rsplit("/", 1)[1] in done.stderr
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert tables == []
    assert list(tmp_path.iterdir()) == []  # nor a secret key or signing key in ./var


def test_a_reading_command_reads_a_database_a_service_made(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres.new_database()
    settings = {"DATABASE_URL": url, "DATA_DIR": str(tmp_path / "var")}
    build(load_settings(settings)).close()  # as `tessera serve` does on first start
    done = run(["admin", "list"], tmp_path, **settings)
    assert done.returncode == 0, done.stderr
    assert run(["audit", "export"], tmp_path, **settings).returncode == 0


def test_a_store_without_its_secret_key_is_refused_not_given_a_new_one(tmp_path: Path) -> None:
    """A new SECRET_KEY would open none of the store's keys: the command names the setting."""
    build(load_settings({"DATA_DIR": str(tmp_path / "var")})).close()
    (tmp_path / "var" / "secret.key").unlink()
    done = run(["admin", "list"], tmp_path)
    assert done.returncode == 2
    assert "no secret key at" in done.stderr
    assert "SECRET_KEY" in done.stderr
    assert not (tmp_path / "var" / "secret.key").exists()


def test_serve_makes_the_store_on_first_start_and_says_where(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with serving("sqlite", request, tmp_path) as (_, data_dir):
        pass
    log = (tmp_path / "serve.log").read_text()
    store = (data_dir / "tessera.sqlite").resolve()
    assert f"created a new store at {store}" in log
    assert f"created a new secret key at {(data_dir / 'secret.key').resolve()}" in log
    assert f"created a new signing key at {(data_dir / 'signing-key.pem').resolve()}" in log
    # Now there is one, the operators' commands read it.
    listed = run(["admin", "list"], tmp_path, DATA_DIR=str(data_dir))
    assert listed.returncode == 0, listed.stderr
    with serving("sqlite", request, tmp_path) as _:
        pass
    assert "created a new" not in (tmp_path / "serve.log").read_text()  # the second start
