"""Erasure by crypto-shredding, on both stores: personal values are sealed per person, erasing
destroys the key, and everything that shows history reads them as erased while the trail still
verifies."""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
from typing import Any

import pyotp
import pytest

from application.audit.trail_export import verify
from application.factors.reauthentication import Proof
from application.origin import current_client
from application.persistence.sealing import PERSONAL_FIELDS
from application.ports import Erased
from application.views import Client, TokenPair
from domain.account import ERASED, Account
from domain.errors import (
    AccountNotFound,
    EmailTaken,
    InvalidCredentials,
    InvalidMfaCode,
    WrongPassword,
)
from interfaces.container import Container, build
from interfaces.settings import Settings
from tests.application.test_use_cases import PASSWORD, verified
from tests.conftest import FakeClock, authenticated, run_projections

PHONE = Client(ip="203.0.113.77", user_agent="Erasable-Phone/7.1")
# Every value of the person's that the store may hold, as it would appear in plain text.
EMAIL, USERNAME = "countess.ada@example.com", "countess_ada"
VALUES = (EMAIL, USERNAME, "Ada Lovelace", "203.0.113.77", "Erasable-Phone/7.1")


def sign_in(container: Container) -> TokenPair:
    tokens = container.login.log_in(USERNAME, PASSWORD, PHONE)
    assert isinstance(tokens, TokenPair)
    return tokens


def used_account(container: Container) -> tuple[Any, str]:
    """Ada registers, verifies, names herself, signs in from her phone and turns MFA on."""
    token = current_client.set(PHONE)
    try:
        verified(container, EMAIL, USERNAME)
        tokens = sign_in(container)
        caller = authenticated(container, tokens.access_token)
        container.profile.update(caller.account_id, "Ada Lovelace")
        secret = container.mfa.enroll(caller).secret
        container.mfa.confirm(caller, pyotp.TOTP(secret).at(container.clock.now()))
        run_projections(container)
        return caller, secret
    finally:
        current_client.reset(token)


def stored_bytes(container: Container) -> bytes:
    """Every stored event and snapshot state, as the store holds them."""
    recorder = container.log.recorder
    states = [n.state for n in recorder.select_notifications(start=1, limit=100_000)]
    assert container.log.snapshots is not None
    return b"\n".join(states)


def test_no_personal_value_is_stored_in_plain_text_yet_every_reader_sees_it(
    container: Container,
) -> None:
    caller, _ = used_account(container)
    stored = stored_bytes(container)
    for value in VALUES:
        assert value.encode() not in stored, value
    account = container.log.find(caller.account_id, Account)
    assert account is not None
    assert (account.email, account.username, account.display_name) == VALUES[:3]
    trail = [e for e in container.history.trail() if e.account_id == caller.account_id]
    assert any(e.details.get("email") == EMAIL for e in trail)
    assert any(e.user_agent == PHONE.user_agent and e.ip == PHONE.ip for e in trail)
    listed = container.read_side.accounts(EMAIL)
    assert [(a.email, a.username, a.display_name) for a in listed] == [VALUES[:3]]
    assert container.read_side.accounts(USERNAME.upper()) == listed


def test_erasure_forgets_the_person_everywhere_and_frees_the_email_and_username(
    container: Container, clock: FakeClock
) -> None:
    caller, secret = used_account(container)
    before = container.history.state_as_of(caller.account_id, clock.now())
    assert before.display_name == "Ada Lovelace"
    exported = list(container.history.export())
    document = json.loads("".join(container.personal_data.document(caller.account_id)))
    assert document["account"]["email"] == EMAIL
    assert any(s["user_agent"] == PHONE.user_agent for s in document["sessions"])
    assert {"Registered", "ProfileUpdated", "SessionStarted", "MfaEnabled"} <= {
        e["type"] for e in document["events"]
    }
    assert {m["kind"] for m in document["mails"]} >= {"verification", "mfa_enabled"}

    clock.advance(seconds=31)  # the next TOTP step
    container.erasure.erase_own(
        caller, Proof(PASSWORD, pyotp.TOTP(secret).at(container.clock.now()))
    )
    run_projections(container)

    with pytest.raises(InvalidCredentials):
        container.login.log_in(EMAIL, PASSWORD, PHONE)
    with pytest.raises(AccountNotFound):
        container.erasure.erase(str(caller.account_id), "cli:root")  # once
    # History still says what happened, not who.
    state = container.history.state_as_of(caller.account_id, before.as_of)
    assert (state.email, state.username, state.display_name) == (ERASED,) * 3
    assert state.mfa_enabled
    # An auditor still names the erased account by its id (its email is forgotten).
    assert container.history.account_id(str(caller.account_id)) == caller.account_id
    with pytest.raises(AccountNotFound):
        container.history.account_id(EMAIL)
    replay = list(container.history.replay(caller.account_id))
    assert replay[-1].type == "AccountErased"
    assert all(e.ip in ("", ERASED) and e.user_agent in ("", ERASED) for e in replay)
    after = list(container.history.export())
    assert verify(exported).ok and verify(after).ok
    # The chains agree on every line both exports hold.
    assert [json.loads(line)["hash"] for line in after[: len(exported)]] == [
        json.loads(line)["hash"] for line in exported
    ]
    text = "\n".join(after)
    for value in VALUES:
        assert value not in text, value
    # Read models: no row holds a value of the person's.
    assert container.read_side.accounts(EMAIL) == []
    assert container.read_side.accounts(USERNAME) == []
    assert container.read_side.live_sessions(caller.account_id) == []
    activity = container.read_side.activity(caller.account_id, None, 500).entries
    assert activity and all(
        value not in json.dumps([e.ip, e.user_agent, e.details])
        for e in activity
        for value in VALUES
    )
    # The email and username are free: a new account, not the old one.
    newcomer = container.registration.register(EMAIL, USERNAME, PASSWORD)
    assert newcomer.id != caller.account_id
    assert container.log.account_for_login(USERNAME) is not None


def test_a_wrong_password_or_a_missing_code_erases_nothing(container: Container) -> None:
    """A missing code records nothing; each wrong guess records only its LoginFailed."""
    caller, secret = used_account(container)
    events = container.log.recorder.max_notification_id() or 0
    with pytest.raises(InvalidMfaCode):
        container.erasure.erase_own(caller, Proof(PASSWORD))
    assert container.log.recorder.max_notification_id() == events
    with pytest.raises(WrongPassword):
        container.erasure.erase_own(
            caller, Proof("not the password", pyotp.TOTP(secret).at(container.clock.now()))
        )
    with pytest.raises(InvalidMfaCode):
        container.erasure.erase_own(caller, Proof(PASSWORD, "000000"))
    assert container.log.recorder.max_notification_id() == events + 2
    assert container.log.find(caller.account_id, Account) is not None
    with pytest.raises(AccountNotFound):
        container.erasure.erase("nobody@example.com", "cli:root")


def test_an_erasure_cut_short_after_its_commit_is_finished_by_the_projector(
    container: Container,
) -> None:
    caller, _ = used_account(container)
    # The process dies after the commit point, before the key is destroyed.
    container.erasure._record(caller.account_id, "cli:root")
    assert not container.log.keys.forgotten([caller.account_id])
    run_projections(container)
    assert container.log.keys.forgotten([caller.account_id]) == {caller.account_id}
    assert all(value not in "\n".join(container.history.export()) for value in VALUES)


def test_a_mail_recorded_before_the_erasure_is_never_sent(container: Container) -> None:
    caller, _ = used_account(container)
    container.passwords.forget(EMAIL)  # a reset mail, not yet delivered
    mails = container.settings.data_path / "mail"
    sent_before = set(mails.glob("*.eml"))
    container.erasure.erase(str(caller.account_id), "cli:root")
    run_projections(container)  # the outbox records it and a worker tries to deliver it
    assert not set(mails.glob("*.eml")) - sent_before  # (and those sent went with the erasure)
    counts = container.outbox._ledger.counts()
    assert counts.get("skipped") == 1, counts


def mail_files(container: Container) -> set[str]:
    return {path.name for path in (container.settings.data_path / "mail").iterdir()}


def test_erasure_removes_the_persons_mails_from_the_drop_and_no_one_elses(
    container: Container,
) -> None:
    caller, _ = used_account(container)  # her verification, sign-in and MFA mails
    verified(container, "bob@example.com", "bob")
    run_projections(container)
    ledger = container.outbox._ledger
    hers = {f"{key}.eml" for key in ledger.keys_of(caller.account_id)}
    bob = container.log.account_named("bob")
    assert bob is not None
    his = {f"{key}.eml" for key in ledger.keys_of(bob.id)}
    assert len(hers) == 3 and len(his) == 1 and hers | his == mail_files(container)
    # What a crash in the middle of writing left of a mail of each (application.mail_files).
    drop = container.settings.data_path / "mail"
    for name in (*hers, *his):
        (drop / f".sending-{name.removesuffix('.eml')}.x1y2z3").write_bytes(b"To: ...")
    assert any(EMAIL.encode() in (drop / name).read_bytes() for name in hers)

    container.erasure.erase(str(caller.account_id), "cli:root")

    left = mail_files(container)
    assert left == his | {f".sending-{name.removesuffix('.eml')}.x1y2z3" for name in his}
    assert not any(EMAIL.encode() in (drop / name).read_bytes() for name in left)


def test_an_erasure_cut_short_after_its_commit_leaves_no_mail_of_the_persons(
    container: Container,
) -> None:
    caller, _ = used_account(container)
    assert len(mail_files(container)) == 3
    container.erasure._record(caller.account_id, "cli:root")  # the process dies here
    assert len(mail_files(container)) == 3
    run_projections(container)  # the erasures projection finishes it
    assert mail_files(container) == set()


def test_a_mail_written_while_its_person_is_erased_is_removed_by_its_postman(
    container: Container, clock: FakeClock
) -> None:
    """The erasure removes the person's files from after its commit; a worker that had read the
    account before that commit writes its file after the removal: the worker removes it."""
    from application.mail.outbox import Postman
    from infrastructure.mail_files import MailDirectory

    caller, _ = used_account(container)
    container.passwords.forget(EMAIL)
    container.mail_broker.stop()  # no worker: the reset mail waits in the ledger
    container.projector("mail_outbox").catch_up()
    (key,) = container.outbox._ledger.unclaimed()

    class ErasedMeanwhile(MailDirectory):
        def send(self, mail: Any) -> None:
            container.erasure.erase(str(caller.account_id), "cli:root")
            super().send(mail)

    drop = ErasedMeanwhile(container.settings.data_path / "mail", "Tessera <t@example.com>")
    postman = container.postman
    racing = Postman(
        container.log,
        container.outbox._ledger,
        postman._renderer,
        drop,
        postman._box,
        clock,
        postman._settings,
        drop=drop,
    )
    assert racing.deliver(key) is None
    assert mail_files(container) == set()
    assert container.outbox._ledger.counts()["skipped"] == 1


def test_claims_and_rate_limits_are_keyed_by_a_keyed_hash(container: Container) -> None:
    fingerprint = container.log.keys.fingerprint
    assert fingerprint("email", EMAIL) != fingerprint("username", EMAIL)
    assert hashlib.sha256(EMAIL.encode()).hexdigest() != fingerprint("email", EMAIL)
    with contextlib.suppress(Exception):
        container.throttle.check("login", "198.51.100.1", EMAIL.upper())
    if container.shared_server is not None:
        held = b" ".join(container.shared_server.keys("*"))
    else:
        held = " ".join(container.throttle._limiter._tats).encode()  # type: ignore[attr-defined]
    assert b"login:id:" in held
    assert EMAIL.encode() not in held and EMAIL.upper().encode() not in held
    assert {"email", "username", "display_name", "ip", "user_agent", "client"} <= PERSONAL_FIELDS


def test_an_erasure_asked_for_over_http_records_the_release_of_the_claims(
    container: Container, clock: FakeClock
) -> None:
    """A request's client rides on every event the save records; the released claims name no
    account whose key could seal it, and must still be saved (both erasures, self and admin)."""
    caller, secret = used_account(container)
    clock.advance(seconds=31)  # the next TOTP step
    token = current_client.set(PHONE)
    try:
        container.erasure.erase_own(caller, Proof(PASSWORD, pyotp.TOTP(secret).at(clock.now())))
        newcomer = container.registration.register(EMAIL, USERNAME, PASSWORD)
        container.erasure.erase(str(newcomer.id), "account:someone")
    finally:
        current_client.reset(token)
    assert container.log.account_for_login(USERNAME) is None


def test_a_reader_holding_the_write_ahead_log_delays_the_scrub_but_does_not_defeat_it(
    sqlite_settings: Settings, clock: FakeClock
) -> None:
    """On SQLite an erased row's old pages stay in the `-wal` file until a truncating checkpoint,
    which a reader in the middle of a transaction keeps busy: past the connection's own busy
    wait (SQLITE_LOCK_TIMEOUT, 10 s) the scrub asks again until the reader has moved on, and
    the log then holds none of the person's values."""
    container = build(sqlite_settings, clock=clock)
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    verified(container, EMAIL, USERNAME)
    run_projections(container)
    accounts = container.settings.data_path / "accounts.sqlite"
    reader = sqlite3.connect(accounts, check_same_thread=False, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM accounts").fetchone() == (1,)
    lock_timeout = float(container.database.eventsourcing_env()["SQLITE_LOCK_TIMEOUT"])
    timer = threading.Timer(lock_timeout + 1.5, reader.execute, args=("COMMIT",))
    timer.start()
    try:
        container.erasure.erase(EMAIL, "cli:root")
        run_projections(container)
        timer.join()
        reader.close()
        # Read while the service still runs: its last connection's close checkpoints anyway.
        wal = accounts.with_name("accounts.sqlite-wal")
        left = (wal.read_bytes() if wal.exists() else b"") + accounts.read_bytes()
        assert EMAIL.encode() not in left and USERNAME.encode() not in left
    finally:
        timer.join()
        container.close()


def test_the_next_owner_of_an_erased_address_shares_no_claim_with_the_erased_account(
    container: Container,
) -> None:
    """The address and username are free again, each under a claim of its own: no aggregate's
    history names both accounts, so a dump without SECRET_KEY links neither to the other."""
    erased = container.registration.register(EMAIL, USERNAME, PASSWORD)
    for cycle in range(2):
        container.erasure.erase(EMAIL, "cli:root")
        newcomer = container.registration.register(EMAIL, USERNAME, PASSWORD)
        run_projections(container)
        claims = [
            notification
            for notification in container.log.recorder.select_notifications(start=1, limit=1000)
            if "Claim" in notification.topic
        ]
        owners: dict[Any, set[Any]] = {}
        for notification in claims:
            event = container.log.mapper.to_domain_event(notification)
            held_by = getattr(event, "account_id", None)
            owners.setdefault(notification.originator_id, set()).update(
                {held_by} if held_by else set()
            )
        assert all(len(accounts) == 1 for accounts in owners.values()), owners
        assert len(owners) == 2 * (cycle + 2)  # an email and a username claim per holder
        found = container.log.account_for_login(EMAIL)
        assert found is not None and found.id == newcomer.id != erased.id
        assert container.log.account_for_login(USERNAME) == found
        erased = newcomer
    with pytest.raises(EmailTaken):
        container.registration.register(EMAIL, "someone_else", PASSWORD)


def test_an_erased_account_erased_again_records_nothing_more_and_fails_nothing(
    container: Container, clock: FakeClock
) -> None:
    """Asked again between an erasure's commit and its key's destruction (two processes
    re-applying one erasure after a restore, or a rerun after a lost race): an erased account
    is no one (EventLog.find), so the second asking finds nothing to erase and records nothing,
    while the first erasure's own follow-up still destroys the key."""
    caller, _ = used_account(container)
    account_id = caller.account_id
    container.erasure._record(account_id, "self")  # committed; the key not yet destroyed
    recorded = len(container.log.recorder.select_events(account_id))

    with pytest.raises(AccountNotFound):  # an operator finds no one: erased is gone
        container.erasure.erase(str(account_id), "cli:root")
    assert container.erasure.reapply(Erased(account_id, clock.now(), 0, ())) is False

    assert len(container.log.recorder.select_events(account_id)) == recorded
    run_projections(container)  # the erasure's own follow-up still destroys the key
    assert container.log.keys.forgotten([account_id]) == {account_id}
