"""End to end: `tessera migrate` as a real process, from a store in the shape the service wrote
before personal values were sealed (plain values in events, claims named by the values
themselves), into an empty one, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

import psycopg
import pytest
from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory, TrackingRecorder
from eventsourcing.utils import Environment

from application.persistence.event_log import EventLog
from application.persistence.migration import old_format_mapper
from application.views import Client, TokenPair
from domain.account import EMAIL_NAMESPACE, USERNAME_NAMESPACE, Account, EmailClaim, UsernameClaim
from domain.errors import EmailTaken, InvalidCredentials, UsernameTaken
from domain.session import Session
from infrastructure.passwords import Argon2Hasher, Argon2Parameters
from infrastructure.persistence import Database
from infrastructure.secret_box import AesGcmBox
from interfaces.container import Container, build
from interfaces.settings import load_settings
from tests.conftest import FAST_ARGON2, FakeClock, run_projections
from tests.e2e.test_serve import tessera
from tests.servers import PostgresCluster

PASSWORD = "correct horse battery staple"
EMAIL, USERNAME, NAME = "countess.ada@example.com", "countess_ada", "Ada Lovelace"
IP, AGENT = "203.0.113.77", "Erasable-Phone/7.1"
VALUES = (EMAIL, USERNAME, NAME, IP, AGENT)
SECRET = base64.urlsafe_b64encode(bytes(range(32))).decode()
T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


@dataclass
class Stores:
    source_args: list[str]
    target_env: dict[str, str]  # the settings of the target, for the command and the test
    cwd: Path
    account_id: UUID
    source_events: list[tuple[UUID, int, str]]  # (id, version, topic) as the old store holds them

    def migrate(self) -> subprocess.CompletedProcess[str]:
        inherited = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        return subprocess.run(
            [tessera(), "migrate", *self.source_args],
            env={**inherited, **self.target_env},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def old_recorder(database: Database) -> ApplicationRecorder:
    env = database.eventsourcing_env()
    env.pop("APPLICATION_RECORDER_TOPIC", None)  # the library's own, as the oldest stores had
    factory = InfrastructureFactory[TrackingRecorder].construct(Environment(EventLog.name, env))
    return factory.application_recorder()


def old_history(secret: bytes) -> list[list[Any]]:
    """Ada's history as the service recorded it before sealing: one list of events per save,
    each with the client it came from, the claims named by uuid5 of the value and holding it."""
    hasher = Argon2Hasher(Argon2Parameters(time_cost=1, memory_cost=1024, parallelism=1))
    client = {"ip": IP, "user_agent": AGENT}
    at = T0
    account = Account(
        email=EMAIL, username=USERNAME, password_hash=hasher.hash(PASSWORD), timestamp=at
    )
    account.request_email_verification(
        "token-hash", AesGcmBox(secret).seal("the token"), at, timedelta(days=1)
    )
    email_claim = EmailClaim(id=uuid5(EMAIL_NAMESPACE, EMAIL), account_id=account.id, timestamp=at)
    username_claim = UsernameClaim(
        id=uuid5(USERNAME_NAMESPACE, USERNAME), account_id=account.id, timestamp=at
    )
    saves: list[list[Any]] = [account.collect_events()]
    for claim, field, value in (
        (email_claim, "email", EMAIL),
        (username_claim, "username", USERNAME),
    ):
        (claimed,) = claim.collect_events()
        object.__setattr__(claimed, field, value)
        saves[0].append(claimed)
    account.verify_email("token-hash", at + timedelta(minutes=5))
    account.update_profile(NAME, at + timedelta(minutes=6))
    saves.append(account.collect_events())
    session = Session(
        id=uuid4(),
        account_id=account.id,
        refresh_token_hash="refresh-hash",
        expires_at=at + timedelta(days=14),
        user_agent=AGENT,
        ip=IP,
        timestamp=at + timedelta(minutes=7),
    )
    saves.append(session.collect_events())
    session.revoke(at + timedelta(minutes=8), reason="logout")
    saves.append(session.collect_events())
    for save in saves:
        for event in save:
            object.__setattr__(event, "client", dict(client))
    return saves


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    target_env = {"DATA_DIR": str(tmp_path / "new"), **FAST_ARGON2}
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    if request.param == "sqlite":
        # The embedded default made its keys in DATA_DIR: the migration carries them over.
        (old_dir / "secret.key").write_text(SECRET)
        database = Database(url=None, sqlite_path=old_dir / "tessera.sqlite")
        source_args = ["--from-data-dir", str(old_dir)]
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        database = Database(url=cluster.new_database(), sqlite_path=old_dir / "unused")
        source_args = ["--from-database-url", str(database.url)]
        target_env["DATABASE_URL"] = cluster.new_database()
        target_env["SECRET_KEY"] = SECRET
    recorder = old_recorder(database)
    mapper = old_format_mapper()
    saves = old_history(base64.urlsafe_b64decode(SECRET))
    for save in saves:
        recorder.insert_events([mapper.to_stored_event(event) for event in save])
    written = recorder.select_notifications(start=1, limit=100)
    recorder.datastore.close()  # type: ignore[attr-defined]
    yield Stores(
        source_args=source_args,
        target_env=target_env,
        cwd=tmp_path,
        account_id=saves[0][0].originator_id,
        source_events=[(n.originator_id, n.originator_version, n.topic) for n in written],
    )


def stored_bytes(container: Container) -> bytes:
    """Every event state the target holds, and on SQLite the whole database file."""
    states = [n.state for n in container.log.recorder.select_notifications(start=1, limit=10_000)]
    path = container.database.sqlite_path
    raw = b"" if container.database.is_postgres else path.read_bytes()
    return b"\n".join([*states, raw])


def test_an_old_store_is_migrated_sealed_and_can_then_be_erased(stores: Stores) -> None:
    migrated = stores.migrate()
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("migrated 8 events")

    container = build(
        load_settings(stores.target_env), clock=FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    )
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    try:
        stored = stored_bytes(container)
        for value in VALUES:
            assert value.encode() not in stored, value

        # The same events, claims excepted: their ids now come from fingerprints.
        notifications = container.log.recorder.select_notifications(start=1, limit=100)
        claims = {
            EmailClaim.id_for(container.log.keys.fingerprint("email", EMAIL)),
            UsernameClaim.id_for(container.log.keys.fingerprint("username", USERNAME)),
        }
        old_claims = {uuid5(EMAIL_NAMESPACE, EMAIL), uuid5(USERNAME_NAMESPACE, USERNAME)}
        assert [
            (n.originator_id, n.originator_version, n.topic)
            for n in notifications
            if n.originator_id not in claims
        ] == [e for e in stores.source_events if e[0] not in old_claims]
        assert {n.originator_id for n in notifications} >= claims
        email_claim = container.log.email_claim(EMAIL)
        assert email_claim is not None and email_claim.account_id == stores.account_id
        assert "email" not in vars(email_claim)

        account = container.log.find(stores.account_id, Account)
        assert account is not None
        assert (account.email, account.username, account.display_name) == (EMAIL, USERNAME, NAME)
        assert account.created_on == T0 and account.email_verified

        # No mail of the old store's is sent again; a new one is.
        outbox = container.projector("mail_outbox")
        assert outbox.position == notifications[-1].id
        run_projections(container)
        ledger: Any = outbox.projection.view
        assert ledger.counts() == {}
        assert not list((Path(stores.target_env["DATA_DIR"]) / "mail").glob("*.eml"))

        tokens = container.login.log_in(EMAIL, PASSWORD, Client(ip=IP, user_agent=AGENT))
        assert isinstance(tokens, TokenPair)
        with pytest.raises(EmailTaken):
            container.registration.register(EMAIL, "someone_else", "another fine passphrase")
        with pytest.raises(UsernameTaken):
            container.registration.register("else@example.com", USERNAME, "another fine passphrase")
        run_projections(container)
        assert [a.email for a in container.read_side.accounts(EMAIL)] == [EMAIL]

        container.erasure.erase(EMAIL, "cli:test")
        run_projections(container)
        with pytest.raises(InvalidCredentials):
            container.login.log_in(EMAIL, PASSWORD, Client())
        decoded = [
            repr(vars(container.log.mapper.to_domain_event(n)))
            for n in container.log.recorder.select_notifications(start=1, limit=100)
        ]
        for value in VALUES:
            assert not any(value in text for text in decoded), value
        assert container.read_side.accounts(EMAIL) == []
        # The old mails stay unsent; the one mail sent is for the sign-in after the migration,
        # and the erasure took its file out of the drop.
        assert ledger.counts() == {"sent": 1}
        assert not list((Path(stores.target_env["DATA_DIR"]) / "mail").glob("*.eml"))
    finally:
        container.close()


def test_a_target_that_holds_events_is_refused(stores: Stores) -> None:
    assert stores.migrate().returncode == 0
    again = stores.migrate()
    assert again.returncode == 2
    assert "holds events already" in again.stderr


def test_a_transaction_open_elsewhere_in_the_cluster_does_not_set_the_outbox_short(
    stores: Stores, request: pytest.FixtureRequest
) -> None:
    """Readers stop before events newer than the oldest transaction running anywhere in the
    cluster; the outbox's position is where the copy ended, not where readers could read."""
    if "DATABASE_URL" not in stores.target_env:
        pytest.skip("SQLite has one writer at a time: no other transaction is open")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with psycopg.connect(cluster.admin_url) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")  # a write transaction, left open
        migrated = stores.migrate()
        assert migrated.returncode == 0, migrated.stderr
        container = build(load_settings(stores.target_env))
        try:
            last = container.log.last_recorded()
            assert container.log.recorder.max_notification_id() != last  # held back meanwhile
            assert container.projector("mail_outbox").position == last
        finally:
            container.close()
        elsewhere.rollback()
