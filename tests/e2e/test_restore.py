"""A backup restored into a new PostgreSQL cluster reads whole: `pg_dump` of a running tessera
database, `psql` into another cluster (whose transaction ids are lower than the rows carry),
then `tessera audit export` holds every line and `tessera projector rebuild` covers every event.
And no whole read ever stops short of the log's end without saying so."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from application.persistence.event_log import END_WAIT, LogHeldBack
from infrastructure.event_store import ConcurrentRecorder
from interfaces.container import build
from interfaces.settings import load_settings
from tests.conftest import FAST_ARGON2
from tests.e2e.test_projector_crash import seed
from tests.e2e.test_serve import PASSWORD, tessera
from tests.infrastructure.test_event_order import claim, stored
from tests.servers import PostgresCluster, _pg_bin, free_port, postgres_cluster, wait_for_port

BURNT_XIDS = 3000  # the old cluster's transaction ids run this far ahead of the new one's


@pytest.fixture(scope="module")
def new_cluster() -> Iterator[PostgresCluster]:
    with postgres_cluster() as cluster:
        yield cluster


def environment(database_url: str, data_dir: Path) -> dict[str, str]:
    environ = {
        **os.environ,
        **FAST_ARGON2,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "REQUIRE_VERIFIED_EMAIL": "false",
        "NOTIFY_NEW_SIGN_IN": "false",
    }
    environ.pop("REDIS_URL", None)
    return environ


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tessera(), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def burn_transaction_ids(url: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(count):
            conn.execute("SELECT pg_current_xact_id()")


def dump_and_restore(source_url: str, target_url: str, work: Path) -> None:
    dump = work / "backup.sql"
    for command in (
        [_pg_bin("pg_dump"), "--no-owner", "-f", str(dump), source_url],
        [_pg_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-f", str(dump), target_url],
    ):
        subprocess.run(command, check=True, capture_output=True)


def test_a_dump_restored_into_a_new_cluster_exports_and_rebuilds_every_event(
    postgres: PostgresCluster, new_cluster: PostgresCluster, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    old = environment(postgres.new_database(), data_dir)
    burn_transaction_ids(old["DATABASE_URL"], BURNT_XIDS)
    seed(old, accounts=10)
    exported = run(old, "audit", "export")
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert len(lines) > 40

    new = environment(new_cluster.new_database(), data_dir)
    dump_and_restore(old["DATABASE_URL"], new["DATABASE_URL"], tmp_path)

    restored = run(new, "audit", "export", "--output", str(tmp_path / "restored.jsonl"))
    assert restored.returncode == 0, restored.stderr
    assert (tmp_path / "restored.jsonl").read_text().splitlines() == lines, "the same trail"
    verified = run(new, "audit", "verify", str(tmp_path / "restored.jsonl"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "copied from another PostgreSQL cluster" in restored.stderr  # said once, at the start
    for name in ("accounts", "sessions", "audit_log"):
        rebuilt = run(new, "projector", "rebuild", name)
        assert rebuilt.returncode == 0, rebuilt.stderr
        with psycopg.connect(new["DATABASE_URL"]) as conn:
            row = conn.execute("SELECT count(*) FROM tessera_events").fetchone()
        assert row is not None
        assert f"rebuilt {name}: {row[0]} of the log's {row[0]} events" in rebuilt.stdout

    # The restored service runs: its people sign in, over HTTP.
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [tessera(), "serve"], env={**new, "PORT": str(port)}, stdout=log, stderr=log
        )
    try:
        wait_for_port(port)
        signed_in = httpx.post(
            f"http://127.0.0.1:{port}/api/auth/login",
            json={"login": "user0001@example.com", "password": PASSWORD},
        )
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["refresh_token"]
    finally:
        server.terminate()
        server.wait(timeout=10)

    # A new save is read after the restored ones.
    container = build(load_settings(new))
    try:
        container.registration.register("after@example.com", "after", "a long passphrase 12")
        assert "Registered" in [e.type for e in container.history.trail()][-3:]
    finally:
        container.close()


@pytest.fixture(scope="module")
def publisher() -> Iterator[PostgresCluster]:
    with postgres_cluster(settings="-c wal_level=logical") as cluster:
        yield cluster


def test_a_promoted_logical_replica_reads_every_event_and_saves_after_them(
    publisher: PostgresCluster, new_cluster: PostgresCluster, tmp_path: Path
) -> None:
    """Logical replication copies rows, transaction ids included, but no sequence: the first
    tessera process on the promoted subscriber adopts the rows and moves the position sequence
    past them, so it exports and rebuilds every event and its next save does not collide."""
    data_dir = tmp_path / "var"
    old = environment(publisher.new_database(), data_dir)
    burn_transaction_ids(old["DATABASE_URL"], BURNT_XIDS)
    seed(old, accounts=5)
    exported = run(old, "audit", "export")
    assert exported.returncode == 0, exported.stderr

    new = environment(new_cluster.new_database(), data_dir)
    schema = subprocess.run(
        [_pg_bin("pg_dump"), "--schema-only", "--no-owner", old["DATABASE_URL"]],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    subprocess.run(
        [_pg_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", new["DATABASE_URL"]],
        input=schema,
        check=True,
        capture_output=True,
        text=True,
    )
    with psycopg.connect(old["DATABASE_URL"], autocommit=True) as source:
        source.execute("CREATE PUBLICATION tessera FOR ALL TABLES")
    source_info = conninfo_to_dict(old["DATABASE_URL"])
    with psycopg.connect(new["DATABASE_URL"], autocommit=True) as subscriber:
        subscriber.execute(
            f"CREATE SUBSCRIPTION tessera CONNECTION 'host=127.0.0.1 port={publisher.port} "  # type: ignore[call-overload]
            f"dbname={source_info['dbname']} user=postgres' PUBLICATION tessera"
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = subscriber.execute(
                "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'"
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.2)
        subscriber.execute("DROP SUBSCRIPTION tessera")  # promoted: the publisher is gone

    restored = run(new, "audit", "export")
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.splitlines() == exported.stdout.splitlines()
    assert "position sequence was" in restored.stderr  # moved at the first start, and said
    container = build(load_settings(new))
    try:
        container.registration.register("after@example.com", "after", "a long passphrase 12")
        assert "Registered" in [e.type for e in container.history.trail()][-3:]
    finally:
        container.close()
    rebuilt = run(new, "projector", "rebuild", "accounts")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert re.search(r"rebuilt accounts: (\d+) of the log's \1 events", rebuilt.stdout)


def test_a_whole_read_held_back_past_its_wait_is_an_error_naming_the_position(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    container = build(load_settings(environment(postgres.new_database(), tmp_path / "var")))
    log = container.log
    recorder = log.recorder
    assert isinstance(recorder, ConcurrentRecorder)
    try:
        log.save(claim())
        with (
            recorder.datastore.get_connection() as conn,
            conn.cursor() as curs,
            conn.transaction(),
        ):
            (held,) = recorder.record(curs, stored(log, claim()))  # allocated, not committed
            log.save(claim())  # committed, behind the open one
            # Busy rather than idle in its transaction, so no idle timeout ends it meanwhile.
            busy = threading.Thread(
                target=conn.execute, args=("SELECT pg_sleep(%s)", (END_WAIT + 1,))
            )
            busy.start()
            with pytest.raises(LogHeldBack) as raised:
                list(container.history.trail())
            assert raised.value.readable == held - 1
            assert f"holds position {held} back" in str(raised.value)
            busy.join()
        assert list(container.history.trail()) == []  # claims are no trail; all read now
    finally:
        container.close()


@pytest.mark.parametrize("deployment", ["postgres", "sqlite"])
def test_an_event_database_restored_from_before_an_erasure_is_erased_again_when_served(
    deployment: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The keys in a store of their own (KEY_STORE_URL): a copy of the event database alone
    opens nothing, and restored from before an erasure (on PostgreSQL into a new cluster), the
    first start erases the person again from the ledger kept with the keys."""
    if deployment == "postgres":
        postgres: PostgresCluster = request.getfixturevalue("postgres")
        old = {
            **environment(postgres.new_database(), tmp_path / "var"),
            "KEY_STORE_URL": postgres.new_database(),
        }
    else:
        old = {**environment("", tmp_path / "var"), "KEY_STORE_URL": str(tmp_path / "keys.db")}
        old.pop("DATABASE_URL")
    seed(old, accounts=3)
    backup = tmp_path / "backup"
    if deployment == "postgres":
        backup.mkdir()
        subprocess.run(
            [_pg_bin("pg_dump"), "--no-owner", "-f", str(backup / "dump.sql"), old["DATABASE_URL"]],
            check=True,
            capture_output=True,
        )
    else:
        shutil.copytree(old["DATA_DIR"], backup)  # every process stopped: the files are whole
    listed = run(old, "admin", "list", "--search", "user0001", "--json")
    (account_id,) = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    erased = run(old, "admin", "erase", "user0001@example.com", "--yes")
    assert erased.returncode == 0, erased.stderr

    if deployment == "postgres":
        new_cluster: PostgresCluster = request.getfixturevalue("new_cluster")
        new = {**old, "DATABASE_URL": new_cluster.new_database()}
        dump = str(backup / "dump.sql")
        subprocess.run(
            [_pg_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-f", dump, new["DATABASE_URL"]],
            check=True,
            capture_output=True,
        )
    else:
        new = {**old, "DATA_DIR": str(backup)}
    # The restored event database alone, with SECRET_KEY but not its key store: refused.
    alone = {k: v for k, v in new.items() if k != "KEY_STORE_URL"}
    refused = run(alone, "audit", "export")
    assert refused.returncode != 0 and "holds no key" in refused.stderr, refused.stderr

    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [tessera(), "serve"], env={**new, "PORT": str(port)}, stdout=log, stderr=log
        )
    try:
        wait_for_port(port)
        said = (tmp_path / "serve.log").read_text()
        assert f"account {account_id} was erased at" in said and "erasure re-applied" in said
        for who, status in (("user0001", 401), ("user0002", 200)):
            signed_in = httpx.post(
                f"http://127.0.0.1:{port}/api/auth/login",
                json={"login": f"{who}@example.com", "password": PASSWORD},
            )
            assert signed_in.status_code == status, signed_in.text
        # The served process's projections scrub the read models of her.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = run(new, "admin", "list", "--json").stdout
            if "user0001" not in found and "user0002" in found:
                break
            time.sleep(0.2)
        assert "user0001" not in found and "user0002" in found
    finally:
        server.terminate()
        server.wait(timeout=10)
    exported = run(new, "audit", "export")
    assert exported.returncode == 0, exported.stderr
    erasures = [
        json.loads(line) for line in exported.stdout.splitlines() if '"AccountErased"' in line
    ]
    assert len(erasures) == 1 and erasures[0]["account_id"] == account_id
    assert "restore (re-applied the erasure of" in json.dumps(erasures[0])
    assert "user0001@example.com" not in exported.stdout
    again = run(new, "admin", "reapply-erasures")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 erasures re-applied" in again.stdout


def test_move_keys_and_reapply_erasures_from_the_command_line(tmp_path: Path) -> None:
    beside = environment("", tmp_path / "var")
    beside.pop("DATABASE_URL")
    seed(beside, accounts=2)
    apart = {**beside, "KEY_STORE_URL": str(tmp_path / "keys" / "keys.sqlite")}
    refused = run(apart, "admin", "list")
    assert refused.returncode == 2 and "tessera admin move-keys" in refused.stderr
    moved = run(apart, "admin", "move-keys")
    assert moved.returncode == 0, moved.stderr
    assert re.search(r"move-keys: \d+ keys and tombstones moved to SQLite file", moved.stdout)
    again = run(apart, "admin", "move-keys")
    assert again.returncode == 2 and "no keys beside the events" in again.stderr
    assert not (tmp_path / "var" / "keys.sqlite").exists()
    listed = run(apart, "admin", "list", "--search", "user0001", "--json")
    (account_id,) = [json.loads(line)["id"] for line in listed.stdout.splitlines()]
    with sqlite3.connect(apart["KEY_STORE_URL"]) as conn:
        conn.execute("DELETE FROM data_keys WHERE owner = ?", (account_id,))
    checked = run(apart, "admin", "reapply-erasures")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"no key for {account_id}" in checked.stdout
    assert (
        "0 erasures re-applied" in checked.stdout and "1 accounts without a key" in checked.stdout
    )
