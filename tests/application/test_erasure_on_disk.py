"""Erasure that holds in the store's files, not only in its answers: once a person is erased,
no file of the database (PostgreSQL: every data file and WAL segment of the cluster; SQLite:
every file under DATA_DIR, write-ahead logs included) holds their address, username, name,
IP or user agent in plain text. Every table keeps such values sealed under the person's data
key, or as keyed fingerprints, so the dead row versions, the WAL, replicas and backups hold
nothing readable once the key is gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyotp
import pytest

from application.factors.reauthentication import Proof
from application.origin import current_client
from interfaces.container import Container, build
from interfaces.settings import load_settings
from tests.application.test_erasure import EMAIL, PHONE, USERNAME, used_account
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FAST_ARGON2, FakeClock, run_projections
from tests.servers import PostgresCluster, postgres_cluster

NAME = "Ada Lovelace"
# The person's values as the tables would hold them in plain text (the address as typed and in
# the lower case registration keeps).
VALUES = (EMAIL, EMAIL.lower(), USERNAME, NAME, PHONE.ip, PHONE.user_agent)


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster of this module's own: its files hold nothing but this test's data."""
    with postgres_cluster() as cluster:
        yield cluster


def found_in(root: Path, values: tuple[str, ...], skip: Path | None = None) -> dict[str, list[str]]:
    """Each value found in the files under `root` (but `skip`), as UTF-8 bytes: in which."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or (skip is not None and path.is_relative_to(skip)):
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a temporary file gone meanwhile
            continue
        for value in values:
            if value.encode() in data:
                found.setdefault(value, []).append(str(path.relative_to(root)))
    return found


def checkpoint(cluster: PostgresCluster) -> None:
    """Every dirty page written to the data files (and the WAL that describes them)."""
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def named(url: str, found: dict[str, list[str]]) -> dict[str, list[str]]:
    """The files of the test's database named by their tables, for a failure that says where."""
    with psycopg.connect(url) as conn:
        (database,) = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone() or (0,)
        relations = dict(
            conn.execute(
                "SELECT pg_relation_filenode(oid)::text, relname FROM pg_class"
                " WHERE pg_relation_filenode(oid) IS NOT NULL"
            ).fetchall()
        )
    prefix = f"base/{database}/"

    def name(path: str) -> str:
        if not path.startswith(prefix):
            return path
        node = path.removeprefix(prefix).split("_")[0].split(".")[0]
        return f"{path} ({relations.get(node, '?')})"

    return {value: [name(path) for path in paths] for value, paths in found.items()}


def live_a_life(container: Container) -> tuple[Any, str]:
    """Ada registers, verifies, signs in from her phone, names herself, turns MFA on, fails a
    sign-in and asks for a reset mail: every read model and the mail ledger have her rows."""
    caller, secret = used_account(container)
    token = current_client.set(PHONE)
    try:
        with pytest.raises(Exception):  # noqa: B017  (the wrong password; any refusal)
            container.login.log_in(EMAIL, "not her password at all", PHONE)
        container.passwords.forget(EMAIL)
        run_projections(container)
    finally:
        current_client.reset(token)
    listed = container.read_side.accounts(EMAIL)
    assert [(a.email, a.username, a.display_name) for a in listed] == [(EMAIL, USERNAME, NAME)]
    (session,) = container.read_side.live_sessions(caller.account_id)
    assert (session.ip, session.user_agent) == (PHONE.ip, PHONE.user_agent)
    return caller, secret


def be_erased(container: Container, clock: FakeClock, caller: Any, secret: str) -> None:
    token = current_client.set(PHONE)
    try:
        clock.advance(seconds=31)  # the next TOTP step
        container.erasure.erase_own(
            caller, Proof(PASSWORD, pyotp.TOTP(secret).at(container.clock.now()))
        )
        run_projections(container)
    finally:
        current_client.reset(token)
    assert container.read_side.accounts(EMAIL) == []


def test_after_an_erasure_and_a_checkpoint_no_file_of_the_cluster_holds_the_persons_values(
    own_cluster: PostgresCluster, tmp_path: Path, clock: FakeClock
) -> None:
    url = own_cluster.new_database()
    settings = load_settings(
        {"DATA_DIR": str(tmp_path / "var"), "DATABASE_URL": url, **FAST_ARGON2}
    )
    container = build(settings, clock=clock)
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    data = own_cluster.directory / "data"
    try:
        caller, secret = live_a_life(container)
        checkpoint(own_cluster)
        # No table holds them in plain text while she is here either.
        assert named(url, found_in(data, VALUES)) == {}
        be_erased(container, clock, caller, secret)
    finally:
        container.close()
    checkpoint(own_cluster)
    assert (data / "pg_wal").is_dir() and (data / "base").is_dir()
    assert named(url, found_in(data, VALUES)) == {}
    # Nor does the server's own log, beside the data directory.
    assert found_in(own_cluster.directory, VALUES, skip=data) == {}
    # The mails went to files under DATA_DIR: the person's are gone with her.
    assert found_in(tmp_path / "var", VALUES) == {}


def test_after_an_erasure_no_sqlite_file_or_write_ahead_log_holds_the_persons_values(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path / "var"), **FAST_ARGON2})
    container: Any = build(settings, clock=clock)
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    var = tmp_path / "var"
    try:
        caller, secret = live_a_life(container)
        # No table holds them in plain text while she is here either (her mails do).
        assert found_in(var, VALUES, skip=var / "mail") == {}
        be_erased(container, clock, caller, secret)
        # Read while the service still runs: closing its connections checkpoints anyway.
        assert found_in(tmp_path / "var", VALUES) == {}
    finally:
        container.close()
    assert found_in(tmp_path / "var", VALUES) == {}
