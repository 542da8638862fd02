"""`tessera projector` as real processes on PostgreSQL: one holds each projection at a time,
and a standby takes over when the holder is killed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psycopg

from interfaces.container import build
from interfaces.settings import load_settings
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import tessera
from tests.servers import PostgresCluster


def test_two_projectors_share_the_work_and_survive_a_kill(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    url = postgres.new_database()
    env = {**os.environ, **FAST_ARGON2, "DATA_DIR": str(tmp_path / "var"), "DATABASE_URL": url}
    env.pop("REDIS_URL", None)
    container = build(
        load_settings(
            {
                k: v
                for k, v in env.items()
                if k in ("DATA_DIR", "DATABASE_URL") or k.startswith("ARGON2")
            }
        )
    )
    try:
        container.registration.register("ada@example.com", "ada", PASSWORD)
        projectors = [
            subprocess.Popen(
                [tessera(), "projector"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        mail = tmp_path / "var" / "mail"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(list(mail.glob("*.eml"))) < 1:
            time.sleep(0.1)
        assert len(list(mail.glob("*.eml"))) == 1

        # kill -9 the process that holds the lease; the standby must take over.
        with psycopg.connect(url) as conn:
            holders = [
                int(row[0].split(":")[1])
                for row in conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE l.locktype = 'advisory' AND l.granted"
                )
            ]
        assert len(holders) == 1
        (holder,) = [p for p in projectors if p.pid == holders[0]]
        holder.kill()
        holder.wait(timeout=10)
        container.registration.register("bob@example.com", "bob", PASSWORD)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(mail.glob("*.eml"))) < 2:
            time.sleep(0.1)
        assert len(list(mail.glob("*.eml"))) == 2
        for process in projectors:
            process.terminate()
            process.wait(timeout=10)
    finally:
        container.close()
