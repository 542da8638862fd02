"""`tessera projector` killed with SIGKILL at random points of its batches, on PostgreSQL: it
resumes where it stopped, and its read models equal a clean rebuild (`tessera projector
rebuild`), row for row. The operators' commands (`tessera admin`) run as real processes too."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from application.views import Client
from interfaces.container import build
from interfaces.settings import load_settings
from tests.conftest import FAST_ARGON2, refreshed
from tests.e2e.test_serve import PASSWORD, tessera
from tests.servers import PostgresCluster

KILLS = int(os.environ.get("PROJECTOR_KILLS", "4"))
TABLES = ("accounts", "sessions", "audit_log")


@pytest.fixture
def env(postgres: PostgresCluster, tmp_path: Path) -> Iterator[dict[str, str]]:
    environ = {
        **os.environ,
        **FAST_ARGON2,
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": postgres.new_database(),
        "REQUIRE_VERIFIED_EMAIL": "false",
        "NOTIFY_NEW_SIGN_IN": "false",
    }
    environ.pop("REDIS_URL", None)
    yield environ


def seed(env: dict[str, str], accounts: int) -> int:
    """Accounts with sessions, refreshes, failures and a lock, through the application layer."""
    container = build(load_settings(env))
    try:
        for n in range(accounts):
            who = f"user{n:04d}"
            container.registration.register(f"{who}@example.com", who, PASSWORD)
            tokens: Any = container.login.log_in(who, PASSWORD, Client("192.0.2.1", "e2e"))
            refreshed(container, tokens.refresh_token)
            if n % 10 == 0:
                container.administration.lock(who, operator="cli:e2e")
        return container.log.recorder.max_notification_id() or 0
    finally:
        container.close()


def positions(url: str) -> dict[str, int]:
    found = {}
    with psycopg.connect(url) as conn:
        for name in TABLES:
            query = (
                f"SELECT coalesce(max(notification_id), 0) FROM {name}_tracking"  # noqa: S608
                " WHERE application_name = 'Tessera'"
            )
            row = conn.execute(query).fetchone()
            found[name] = int(row[0]) if row else 0
    return found


def dump(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of the read models as it reads: their personal values are sealed afresh by
    each projection of them (a new nonce), so two projections' bytes differ, not what they say."""
    from tests.application.test_read_models import tables

    container = build(load_settings(env))
    try:
        return tables(container)
    finally:
        container.close()


def wait_until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_projector_killed_mid_batch_resumes_and_matches_a_clean_rebuild(
    env: dict[str, str], tmp_path: Path
) -> None:
    head = seed(env, accounts=150)
    url = env["DATABASE_URL"]
    log = (tmp_path / "projector.log").open("ab")
    rng = random.Random(os.environ.get("CHAOS_SEED", "5"))
    kills = 0
    for _ in range(KILLS):
        before = positions(url) if kills else {name: 0 for name in TABLES}
        process = subprocess.Popen([tessera(), "projector"], env=env, stdout=log, stderr=log)
        try:
            # Killed once it is at work, at a random moment of its batches.
            wait_until(lambda b=before: positions(url) != b, timeout=30)  # type: ignore[misc]
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        if min(positions(url).values()) >= head:
            break  # it finished before the kill: nothing left to interrupt
        kills += 1
    assert kills >= 1, "every projector finished before it could be killed: seed more events"
    process = subprocess.Popen([tessera(), "projector"], env=env, stdout=log, stderr=log)
    try:
        wait_until(lambda: min(positions(url).values()) >= head)
    finally:
        process.terminate()
        process.wait(timeout=15)
    resumed = dump(env)
    assert len(resumed["accounts"]) == 150
    assert len(resumed["audit_log"]) == head - 2 * 150  # every event but the two claims each

    for name in TABLES:
        rebuilt = subprocess.run(
            [tessera(), "projector", "rebuild", name],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert rebuilt.stdout.startswith(f"rebuilt {name}: {head} of the log's {head} events")
    assert dump(env) == resumed


def test_a_rebuild_waits_for_the_projection_s_lease(env: dict[str, str], tmp_path: Path) -> None:
    seed(env, accounts=2)
    log = (tmp_path / "projector.log").open("ab")
    process = subprocess.Popen([tessera(), "projector"], env=env, stdout=log, stderr=log)
    try:
        wait_until(lambda: min(positions(env["DATABASE_URL"]).values()) > 0, timeout=30)
        refused = subprocess.run(
            [tessera(), "projector", "rebuild", "accounts", "--wait", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 1
        assert "another process" in refused.stderr
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_admin_commands_change_accounts_and_name_the_operator(env: dict[str, str]) -> None:
    seed(env, accounts=2)

    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tessera(), "admin", "--operator", "ops:alice", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert admin("grant-role", "user0001@example.com", "auditor").stdout.strip() == (
        "grant-role user0001: done"
    )
    assert "nothing to change" in admin("grant-role", "USER0001", "auditor").stdout
    assert admin("disable", "user0001").returncode == 0
    missing = admin("lock", "nobody")
    assert missing.returncode == 2 and "no account" in missing.stderr
    assert "Traceback" not in missing.stderr
    listing = admin("list", "--search", "user0001")
    assert listing.returncode == 0, listing.stderr
    (_, row) = listing.stdout.strip().splitlines()
    assert row.split()[:3] == ["user0001", "user0001@example.com", "auditor"]
    assert "disabled" in row

    container = build(load_settings(env))
    try:
        account = container.log.account_for_login("user0001")
        assert account is not None and account.disabled and account.roles == ["auditor"]
        replay = list(container.history.replay(account.id))
        operators = {
            e.details.get("operator")
            for e in replay
            if e.type in ("RoleGranted", "AccountDisabled")
        }
        assert operators == {"ops:alice"}
    finally:
        container.close()
