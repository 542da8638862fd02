"""The key store apart from the event database (KEY_STORE_URL), and the erasure ledger kept in
it, on both stores: a copy of the event database alone opens nothing, every destroyed key has
its ledger entry (written in the same step), and an event database restored from a backup older
than an erasure gets the erasure again."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from litestar.testing import TestClient

from application.ports import LostKey
from domain.account import Account, EmailClaim, UsernameClaim
from domain.errors import AccountNotFound, InvalidCredentials
from infrastructure.data_keys import KeyStoreEmpty, service_owner
from infrastructure.key_store import KeysNotMoved, move_keys
from infrastructure.keyring import CSRF
from interfaces.container import Container, build
from interfaces.http.app import create_app
from interfaces.settings import load_settings
from tests.application.test_erasure import PHONE
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FAST_ARGON2, FakeClock, run_projections
from tests.servers import _pg_bin, postgres_cluster

ADA, BOB = "ada@example.com", "bob@example.com"


@pytest.fixture(params=["sqlite", "postgres+redis"])
def environ(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """A deployment whose keys live in a store of their own, and its SECRET_KEY given (so a
    restored DATA_DIR or database opens with it)."""
    environ = {
        **FAST_ARGON2,
        "DATA_DIR": str(tmp_path / "var"),
        "SECRET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "REQUIRE_VERIFIED_EMAIL": "false",
        "NOTIFY_NEW_SIGN_IN": "false",
    }
    if request.param == "postgres+redis":
        postgres = request.getfixturevalue("postgres")
        environ["DATABASE_URL"] = postgres.new_database()
        environ["REDIS_URL"] = request.getfixturevalue("redis_url")
        environ["KEY_STORE_URL"] = postgres.new_database()
    else:
        environ["KEY_STORE_URL"] = str(tmp_path / "keys" / "keys.sqlite")
    return environ


def started(environ: dict[str, str], clock: FakeClock | None = None) -> Container:
    container = build(load_settings(environ), clock=clock)
    container.mail_broker.start_worker(threads=1, poll_ms=20)  # as the container fixture's
    return container


def back_up(environ: dict[str, str], where: Path, url: str = "DATABASE_URL") -> Path:
    """The event database (DATABASE_URL, or DATA_DIR's files), or the key store (url=
    "KEY_STORE_URL"), as a backup: a pg_dump, or a copy of the files (taken while closed)."""
    where.mkdir(parents=True)
    if url == "KEY_STORE_URL" and not environ["KEY_STORE_URL"].startswith("postgresql"):
        return Path(shutil.copy(environ["KEY_STORE_URL"], where))
    if "DATABASE_URL" not in environ and url == "DATABASE_URL":
        return Path(shutil.copytree(environ["DATA_DIR"], where / "var"))
    dump = where / "backup.sql"
    subprocess.run(
        [_pg_bin("pg_dump"), "--no-owner", "-f", str(dump), environ[url]],
        check=True,
        capture_output=True,
    )
    return dump


def restored(environ: dict[str, str], backup: Path, postgres: Any = None) -> dict[str, str]:
    """The deployment with its event database restored from `backup` (into a new database)."""
    if backup.is_dir():
        return {**environ, "DATA_DIR": str(backup)}
    target = postgres.new_database()
    subprocess.run(
        [_pg_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-f", str(backup), target],
        check=True,
        capture_output=True,
    )
    return {**environ, "DATABASE_URL": target}


def restore_key_store(environ: dict[str, str], backup: Path) -> None:
    """The key store put back as `backup` holds it (in place)."""
    url = environ["KEY_STORE_URL"]
    if not url.startswith("postgresql"):
        shutil.copy(backup, url)
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE tessera_data_keys, tessera_erasures")
    subprocess.run(
        [_pg_bin("psql"), "-q", "-v", "ON_ERROR_STOP=1", "-f", str(backup), url],
        check=True,
        capture_output=True,
    )


def two_people(container: Container) -> tuple[UUID, UUID]:
    ada = container.registration.register(ADA, "ada", PASSWORD).id
    bob = container.registration.register(BOB, "bob", PASSWORD).id
    container.login.log_in(ADA, PASSWORD, PHONE)
    run_projections(container)
    return ada, bob


def test_the_keys_live_in_their_own_store_and_the_event_database_alone_opens_nothing(
    environ: dict[str, str],
) -> None:
    container = started(environ)
    try:
        ada, _ = two_people(container)
        assert container.log.find(ada, Account) is not None
    finally:
        container.close()
    if "DATABASE_URL" in environ:
        with psycopg.connect(environ["DATABASE_URL"]) as conn:
            row = conn.execute(
                "SELECT to_regclass('tessera_data_keys'), to_regclass('tessera_erasures')"
            ).fetchone()
        assert row == (None, None), "no key table in the event database"
    else:
        assert not (Path(environ["DATA_DIR"]) / "keys.sqlite").exists()
        assert Path(environ["KEY_STORE_URL"]).exists()
    # The event database with the right SECRET_KEY but without its key store: refused at
    # once, rather than opening nothing and sealing what follows under keys made anew.
    alone = {k: v for k, v in environ.items() if k != "KEY_STORE_URL"}
    with pytest.raises(KeyStoreEmpty, match="holds no key"):
        started(alone)


def test_an_erasure_is_written_to_the_ledger_with_its_position_and_released_claims(
    environ: dict[str, str],
) -> None:
    container = started(environ)
    try:
        ada, bob = two_people(container)
        fingerprint = container.log.keys.fingerprint
        email_claim = EmailClaim.id_for(fingerprint("email", ADA))
        username_claim = UsernameClaim.id_for(fingerprint("username", "ada"))
        container.erasure.erase(ADA, "cli:root")
        (entry,) = container.log.keys.erasures()
        assert entry.account_id == ada
        assert set(entry.claims) == {email_claim, username_claim}
        assert entry.position is not None
        (notification,) = container.log.recorder.select_notifications(entry.position, 1)
        assert notification.originator_id == ada
        assert notification.topic.endswith("AccountErased")
        assert container.log.keys.forgotten([ada, bob]) == {ada}
    finally:
        container.close()


def test_an_erasure_cut_short_after_its_commit_gets_its_ledger_entry_from_the_projector(
    environ: dict[str, str],
) -> None:
    container = started(environ)
    try:
        ada, _ = two_people(container)
        fingerprint = container.log.keys.fingerprint
        email_claim = EmailClaim.id_for(fingerprint("email", ADA))
        container.erasure._record(ada, "cli:root")  # the process dies before the key goes
        assert container.log.keys.erasures() == []
        run_projections(container)
        (entry,) = container.log.keys.erasures()
        assert entry.account_id == ada and entry.position is not None
        assert email_claim in entry.claims
        assert container.log.keys.forgotten([ada]) == {ada}
    finally:
        container.close()


def test_a_key_is_never_destroyed_without_its_ledger_entry(environ: dict[str, str]) -> None:
    """The ledger cannot be written (its table is gone): the key stays, the erasure stays to
    be finished, and the projector finishes it once the ledger can be written again."""
    container = started(environ)
    try:
        ada, _ = two_people(container)
        url = environ["KEY_STORE_URL"]
        if url.startswith("postgresql"):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ALTER TABLE tessera_erasures RENAME TO tessera_erasures_away")
        else:
            with sqlite3.connect(url) as conn:
                conn.execute("ALTER TABLE erasures RENAME TO erasures_away")
        with pytest.raises(Exception):  # noqa: B017 (the store's own error, whatever it is)
            container.erasure.erase(ADA, "cli:root")
        assert container.log.keys.forgotten([ada]) == set(), "no key destroyed unrecorded"
        assert container.log.erasure_recorded(ada), "the commit point was passed"
        if url.startswith("postgresql"):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ALTER TABLE tessera_erasures_away RENAME TO tessera_erasures")
        else:
            with sqlite3.connect(url) as conn:
                conn.execute("ALTER TABLE erasures_away RENAME TO erasures")
        run_projections(container)
        assert [e.account_id for e in container.log.keys.erasures()] == [ada]
        assert container.log.keys.forgotten([ada]) == {ada}
    finally:
        container.close()


def test_an_event_database_restored_from_before_an_erasure_gets_the_erasure_again(
    environ: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock = FakeClock()
    container = started(environ, clock)
    try:
        ada, bob = two_people(container)
    finally:
        container.close()
    backup = back_up(environ, tmp_path / "backup")
    container = started(environ, clock)
    try:
        container.erasure.erase(ADA, "cli:root")
        erased_at = container.log.keys.erasures()[0].at
    finally:
        container.close()

    postgres = request.getfixturevalue("postgres") if "DATABASE_URL" in environ else None
    after = restored(environ, backup, postgres)
    clock.advance(seconds=3600)
    container = started(after, clock)
    try:
        # As restored, the event database holds Ada as she was: not erased.
        assert container.log.erasure_recorded(ada) is False
        assert container.after_restore.reapply_erasures() == [ada]
        run_projections(container)
        with pytest.raises(InvalidCredentials):
            container.login.log_in("ada", PASSWORD, PHONE)
        with pytest.raises(AccountNotFound):
            container.erasure.erase(str(ada), "cli:root")
        # The trail shows the erasure again, naming the restore and the erasure's first time.
        last = list(container.history.replay(ada))[-1]
        assert last.type == "AccountErased"
        assert "restore" in str(last.details) and f"{erased_at:%Y-%m-%dT%H:%M}" in str(last.details)
        # The read models hold nothing of hers; her sessions are over.
        assert container.read_side.accounts("ada") == []
        assert container.read_side.live_sessions(ada) == []
        # Her address and username are free again (the claims the ledger names).
        assert container.registration.register(ADA, "ada", PASSWORD).id != ada
        # Bob was not erased, and still signs in; a second start re-applies nothing.
        assert container.login.log_in(BOB, PASSWORD, PHONE)
        assert container.after_restore.reapply_erasures() == []
        (entry,) = container.log.keys.erasures()
        assert entry.at == erased_at  # the ledger keeps the erasure's own time
        assert container.log.erasure_recorded(bob) is False
    finally:
        container.close()


def test_a_key_store_restored_from_before_an_erasure_has_the_key_destroyed_again(
    environ: dict[str, str], tmp_path: Path
) -> None:
    container = started(environ)
    try:
        ada, _ = two_people(container)
    finally:
        container.close()
    backup = back_up(environ, tmp_path / "keys-backup", url="KEY_STORE_URL")
    container = started(environ)
    try:
        container.erasure.erase(ADA, "cli:root")
        run_projections(container)
    finally:
        container.close()
    restore_key_store(environ, backup)
    container = started(environ)
    try:
        assert container.log.keys.forgotten([ada]) == set(), "the old key is back"
        check = container.after_restore.check_keys()
        assert check.forgotten_again == [ada]
        assert check.reapplied == [] and check.lost == []
        assert container.log.keys.forgotten([ada]) == {ada}
        assert [e.account_id for e in container.log.keys.erasures()] == [ada]
        assert container.after_restore.check_keys().forgotten_again == []
    finally:
        container.close()


@pytest.fixture
def lost_key(environ: dict[str, str]) -> Iterator[tuple[Container, UUID]]:
    """Ada's key is gone from the key store (restored from a backup older than her), and she
    is not erased."""
    container = started(environ)
    try:
        ada, _ = two_people(container)
    finally:
        container.close()
    url = environ["KEY_STORE_URL"]
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM tessera_data_keys WHERE owner = %s", (ada,))
    else:
        with sqlite3.connect(url) as conn:
            conn.execute("DELETE FROM data_keys WHERE owner = ?", (str(ada),))
    container = started(environ)
    yield container, ada
    container.close()


def test_an_account_whose_key_is_lost_is_reported_and_refused_with_a_503_never_a_new_key(
    lost_key: tuple[Container, UUID], caplog: pytest.LogCaptureFixture
) -> None:
    container, ada = lost_key
    check = container.after_restore.check_keys()
    assert check.lost == [ada] and check.reapplied == check.forgotten_again == []
    with TestClient(create_app(container, run_background=False)) as client:
        answer = client.post("/api/auth/login", json={"login": ADA, "password": PASSWORD})
        assert answer.status_code == 503, answer.text
        assert answer.json()["code"] == "unavailable"
        again = client.post("/api/auth/login", json={"login": BOB, "password": PASSWORD})
        assert again.status_code == 200, "only the person whose key is lost"
        assert f"the key store holds no key for account {ada}" in caplog.text
        with pytest.raises(LostKey):
            container.log.keys.seal(ada, b"email", b"anything")
        assert container.log.keys.missing([ada]) == {ada}, "no key made anew for her"


def test_keys_kept_beside_the_events_are_moved_into_a_key_store_of_their_own(
    environ: dict[str, str],
) -> None:
    beside = {k: v for k, v in environ.items() if k != "KEY_STORE_URL"}
    container = started(beside)
    try:
        ada, bob = two_people(container)
        container.erasure.erase(ADA, "cli:root")
        run_projections(container)
        ledger = container.log.keys.erasures()
    finally:
        container.close()
    with pytest.raises(KeyStoreEmpty):
        started(environ)  # KEY_STORE_URL set before the keys were moved there

    settings = load_settings(environ)
    default_file = settings.data_path / "keys.sqlite"
    moved = move_keys(settings.database_url, settings.key_store_url, default_file)
    assert moved >= 5  # the service's four keys, Ada's tombstone, Bob's key
    with pytest.raises(KeysNotMoved, match="no keys beside the events"):
        move_keys(settings.database_url, settings.key_store_url, default_file)
    if settings.database_url:
        with psycopg.connect(settings.database_url) as conn:
            row = conn.execute("SELECT to_regclass('tessera_data_keys')").fetchone()
        assert row == (None,)
    else:
        assert not default_file.exists()

    container = started(environ)
    try:
        assert container.log.keys.erasures() == ledger
        assert container.login.log_in(BOB, PASSWORD, PHONE)  # his key and the service's moved
        account = container.log.find(bob, Account)
        assert account is not None and account.email == BOB
        assert container.log.keys.forgotten([ada, bob]) == {ada}
    finally:
        container.close()


def test_readiness_names_a_key_store_of_its_own_and_says_when_it_does_not_answer(
    tmp_path: Path,
) -> None:
    with postgres_cluster() as keys_cluster:
        environ = {
            **FAST_ARGON2,
            "DATA_DIR": str(tmp_path / "var"),
            "KEY_STORE_URL": keys_cluster.new_database(),
        }
        container = started(environ)
        try:
            assert container.readiness()["key_store"] == "ok"
            keys_cluster.pg_ctl("stop")
            with TestClient(create_app(container, run_background=False)) as client:
                ready = client.get("/health/ready")
                assert ready.status_code == 503
                assert ready.json()["key_store"] == "unreachable"
                assert ready.json()["event_store"] == "ok"
        finally:
            container.close()


def test_a_key_store_from_before_the_ledger_gets_its_tombstones_as_entries(
    environ: dict[str, str],
) -> None:
    container = started(environ)
    try:
        ada, _ = two_people(container)
        container.erasure.erase(ADA, "cli:root")
        assert container.keys is not None  # and a service key's retired version: no erasure
        version = container.keys.add_service_version(CSRF, datetime.now(UTC))
        container.keys.destroy_service_version(CSRF, version.number)
    finally:
        container.close()
    url = environ["KEY_STORE_URL"]
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE tessera_erasures")
    else:
        with sqlite3.connect(url) as conn:
            conn.execute("DROP TABLE erasures")
    container = started(environ)
    try:
        (entry,) = container.log.keys.erasures()
        assert (entry.account_id, entry.position, entry.claims) == (ada, None, ())
    finally:
        container.close()


def test_a_retired_version_of_a_service_key_is_no_erasure(environ: dict[str, str]) -> None:
    container = started(environ)
    try:
        keys = container.keys
        assert keys is not None
        version = keys.add_service_version(CSRF, datetime.now(UTC))
        keys.destroy_service_version(CSRF, version.number)
        assert keys.forgotten([service_owner(CSRF, version.number)])
        assert keys.erasures() == []
        assert container.after_restore.reapply_erasures() == []
    finally:
        container.close()


def test_a_start_reads_two_rows_whatever_the_ledger_holds(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start asks the log about no ledger entry while the log still holds the furthest
    erasure the ledger knows: none could be missing before it."""
    container = started(environ)
    try:
        for n in range(3):
            container.registration.register(f"p{n}@example.com", f"person{n}", PASSWORD)
            container.erasure.erase(f"p{n}@example.com", "cli:root")
        container.registration.register("q@example.com", "quinn", PASSWORD)  # events after them
        asked: list[UUID] = []
        recorded = container.log.erasure_recorded

        def counted(account_id: UUID) -> bool | None:
            asked.append(account_id)
            return recorded(account_id)

        monkeypatch.setattr(container.log, "erasure_recorded", counted)
        assert container.after_restore.reapply_erasures() == []
        assert asked == []
        # The command (and a start after a restore) still reads every entry.
        assert container.after_restore.check_keys().reapplied == []
        assert len(asked) == 3
    finally:
        container.close()


def test_an_erasure_lost_to_a_restore_is_found_though_new_events_took_its_position(
    environ: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Restored from before the erasure, and written to since (so the log reaches past the
    erasure's position again, with other events there): still found at the next start."""
    clock = FakeClock()
    container = started(environ, clock)
    try:
        ada, _ = two_people(container)
    finally:
        container.close()
    backup = back_up(environ, tmp_path / "backup")
    container = started(environ, clock)
    try:
        for n in range(3):  # events between the backup and the erasure: a later position
            container.registration.register(f"p{n}@example.com", f"person{n}", PASSWORD)
        container.erasure.erase(ADA, "cli:root")
        (entry,) = container.log.keys.erasures()
    finally:
        container.close()

    postgres = request.getfixturevalue("postgres") if "DATABASE_URL" in environ else None
    after = restored(environ, backup, postgres)
    container = started(after, clock)
    try:
        assert entry.position is not None
        while container.log.last_recorded() < entry.position + 2:
            name = secrets.token_hex(4)
            container.registration.register(f"{name}@example.com", f"u{name}", PASSWORD)
        assert container.log.erasure_recorded(ada) is False
        assert container.after_restore.reapply_erasures() == [ada]
        assert container.log.erasure_recorded(ada) is True
        assert container.after_restore.reapply_erasures() == []
    finally:
        container.close()
