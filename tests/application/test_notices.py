"""A notice for every change to the ways into an account, on both stores: one delivery per event,
through the outbox, each saying what changed, when, from where, and how to react.

The changes are made on the account itself (the domain's commands, saved by the EventLog with the
request's client as the edge sets it): the endpoints that make them are changing their request
shapes (re-authentication), and what is under test here is the mail each event makes."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from eventsourcing.persistence import Tracking

from application.mail.outbox import NOTICES
from application.origin import current_client
from application.views import Client, TokenPair
from domain.account import NO_PASSWORD, Account
from interfaces.container import Container, build
from interfaces.settings import Settings
from tests.application.test_use_cases import PASSWORD, verified
from tests.conftest import FakeClock, authenticated, run_projections

PUBLIC_URL = "https://id.example.test/base"
PHONE = Client(ip="198.51.100.23", user_agent="Mozilla/5.0 (Notice-Phone; rv:7.1)")
HASHES = [f"{n:064x}" for n in range(10)]


@pytest.fixture
def container(settings: Settings, clock: FakeClock) -> Iterator[Container]:
    """The shared container, with a PUBLIC_URL of its own: the links must come from it."""
    built = build(msgspec.structs.replace(settings, public_url=PUBLIC_URL), clock=clock)
    built.mail_broker.start_worker(threads=1, poll_ms=20)
    yield built
    built.close()


def changed(
    container: Container, account_id: UUID, change: Callable[[Account, datetime], Any]
) -> int:
    """Makes a change from Ada's phone, a minute after the last; returns the event's version."""
    container.clock.advance(minutes=1)  # type: ignore[attr-defined]
    account = container.log.find(account_id, Account)
    assert account is not None
    token = current_client.set(PHONE)
    try:
        change(account, container.clock.now())
        container.log.save(account)
    finally:
        current_client.reset(token)
    return account.version


def mails_by_key(container: Container) -> dict[str, EmailMessage]:
    found: dict[str, EmailMessage] = {}
    for path in (container.settings.data_path / "mail").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found[str(message["Message-ID"]).strip("<>").split("@")[0]] = message  # type: ignore[assignment]
    return found


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def every_change(container: Container) -> tuple[UUID, dict[str, int]]:
    """Ada changes each way into her account once; the version of each change's event."""
    verified(container)
    tokens = container.login.log_in("ada", PASSWORD, PHONE)
    assert isinstance(tokens, TokenPair)
    ada = authenticated(container, tokens.access_token).account_id
    hasher = container.passwords._hasher  # type: ignore[attr-defined]
    identity = str(uuid4())
    versions = {
        "mfa_enabled": changed(
            container,
            ada,
            lambda a, at: (
                a.start_mfa_enrollment("sealed", at),
                a.enable_mfa(step=1, recovery_code_hashes=HASHES, at=at),
            ),
        ),
        "recovery_codes_renewed": changed(
            container, ada, lambda a, at: a.renew_recovery_codes(HASHES[::-1], at)
        ),
        "passkey_added": changed(
            container,
            ada,
            lambda a, at: a.register_passkey("credential-1", "key", 0, "Ada's <b>key</b>", [], at),
        ),
        "passkey_removed": changed(
            container, ada, lambda a, at: a.remove_passkey("credential-1", at)
        ),
        "identity_linked": changed(
            container,
            ada,
            lambda a, at: a.link_identity(identity, "exampleid", "subject-1", "ada@id.test", at),
        ),
        "identity_unlinked": changed(container, ada, lambda a, at: a.unlink_identity(identity, at)),
        "mfa_disabled": changed(container, ada, lambda a, at: a.disable_mfa(at)),
        "password_changed": changed(
            container,
            ada,
            lambda a, at: a.change_password(hasher.hash("a brand new passphrase"), at, 5),
        ),
    }
    return ada, versions


def test_every_change_to_the_ways_in_mails_one_notice(container: Container) -> None:
    ada, versions = every_change(container)
    run_projections(container)
    sent = mails_by_key(container)
    assert set(versions) == set(NOTICES.values())
    subjects = {
        "mfa_enabled": "Two-step sign-in is on for your Tessera account",
        "recovery_codes_renewed": "New recovery codes for your Tessera account",
        "passkey_added": "A passkey was added to your Tessera account",
        "passkey_removed": "A passkey was removed from your Tessera account",
        "identity_linked": "A sign-in with exampleid was linked to your Tessera account",
        "identity_unlinked": "A sign-in with exampleid was unlinked from your Tessera account",
        "mfa_disabled": "Two-step sign-in is off for your Tessera account",
        "password_changed": "Your Tessera password was changed",
    }
    for kind, version in versions.items():
        message = sent.pop(f"{ada}-{version}")  # the event's own mail, by its key
        assert str(message["Subject"]) == subjects[kind]
        assert message["To"] == "ada@example.com"
    # Besides them only the verification and the sign-in: nothing twice, nothing more.
    assert sorted(str(m["Subject"]) for m in sent.values()) == [
        "New sign-in to your Tessera account",
        "Verify your email address for Tessera",
    ]
    assert container.outbox._ledger.counts() == {"sent": len(versions) + 2}
    # The person's own data lists them (GDPR Art. 15), by kind.
    document = json.loads("".join(container.personal_data.document(ada)))
    assert {m["kind"] for m in document["mails"]} == {*versions, "verification", "new_sign_in"}


def test_each_notice_says_what_when_from_where_and_how_to_react(container: Container) -> None:
    ada, versions = every_change(container)
    run_projections(container)
    sent = mails_by_key(container)
    what = {
        "mfa_enabled": "Two-step sign-in (an authenticator app) was turned on",
        "recovery_codes_renewed": "New recovery codes were made for your account",
        "passkey_added": 'A passkey named "Ada\'s <b>key</b>" was added to your account',
        "passkey_removed": 'The passkey named "Ada\'s <b>key</b>" was removed',
        "identity_linked": "A sign-in with exampleid was linked to your account",
        "identity_unlinked": "sign-in with exampleid was unlinked",
        "mfa_disabled": "Two-step sign-in was turned off",
        "password_changed": "The password of your account was changed",
    }
    for kind, version in versions.items():
        message = sent[f"{ada}-{version}"]
        (event,) = container.log.events.get(ada, gt=version - 1, lte=version)
        when = event.timestamp.strftime("%Y-%m-%d %H:%M UTC")
        text, html = text_of(message), html_of(message)
        assert what[kind] in text, (kind, text)
        assert f"When: {when}" in text, (kind, text)
        assert f"Device: {PHONE.user_agent}" in text
        assert f"IP address: {PHONE.ip}" in text
        # How to react: the reset page and the account page, from PUBLIC_URL.
        assert f"{PUBLIC_URL}/forgot-password" in text
        assert f"{PUBLIC_URL}/account" in text
        assert f'href="{PUBLIC_URL}/forgot-password"' in html
        assert when in html and PHONE.ip in html and "Notice-Phone" in html
    # A passkey's name is the person's own words: shown as they are in text, escaped in HTML.
    added = html_of(sent[f"{ada}-{versions['passkey_added']}"])
    assert "<b>key</b>" not in added and "&lt;b&gt;key&lt;/b&gt;" in added


def test_the_sign_in_mail_says_where_from_as_the_notices_do(container: Container) -> None:
    verified(container)
    container.login.log_in("ada", PASSWORD, PHONE)
    run_projections(container)
    (sign_in,) = [m for m in mails_by_key(container).values() if "sign-in to" in str(m["Subject"])]
    text = text_of(sign_in)
    assert f"Device: {PHONE.user_agent}" in text and f"IP address: {PHONE.ip}" in text
    assert f"{PUBLIC_URL}/forgot-password" in text


def test_a_change_with_no_request_says_where_from_is_not_recorded(
    container: Container,
) -> None:
    """An operator's tool (the CLI) has no client: the notice says so, and invents nothing."""
    verified(container)
    account = container.log.account_named("ada")
    assert account is not None
    account.register_passkey("credential-1", "key", 0, "spare key", [], container.clock.now())
    container.log.save(account)
    run_projections(container)
    (notice,) = [m for m in mails_by_key(container).values() if "passkey" in str(m["Subject"])]
    assert "Device: not recorded" in text_of(notice)
    assert "IP address: not recorded" in text_of(notice)


def test_an_account_without_a_password_is_told_what_to_do_instead(
    container: Container,
) -> None:
    """Made by a provider sign-in: no notice for the identity it was made with, and the
    passkey notice sends it to its account page, not to a password it does not have."""
    now = container.clock.now()
    account = Account(
        email="grace@example.com", username="grace", password_hash=NO_PASSWORD, timestamp=now
    )
    account.link_identity(str(uuid4()), "exampleid", "subject-9", "grace@example.com", now)
    container.log.save(account)
    changed(
        container,
        account.id,
        lambda a, at: a.register_passkey("credential-9", "key", 0, "laptop", [], at),
    )
    run_projections(container)
    (notice,) = mails_by_key(container).values()
    assert str(notice["Subject"]) == "A passkey was added to your Tessera account"
    text = text_of(notice)
    assert "no password to reset" in text and f"{PUBLIC_URL}/account" in text
    assert "forgot-password" not in text
    # The identity it was made with was recorded, and closed unsent.
    assert container.outbox._ledger.counts() == {"sent": 1, "skipped": 1}


def test_an_event_replayed_into_the_outbox_makes_no_second_mail(container: Container) -> None:
    """A projector that reads an event again (a restored tracking table, a replay) records
    nothing new: the delivery's key is the event's identity."""
    ada, versions = every_change(container)
    run_projections(container)
    before = {key: path.read_bytes() for key, path in _files(container)}
    counts = container.outbox._ledger.counts()
    position = container.log.recorder.max_notification_id() or 0
    for offset, version in enumerate(versions.values(), start=1):
        (event,) = container.log.events.get(ada, gt=version - 1, lte=version)
        container.outbox.process_event(event, Tracking("replay", position + offset))
    container.mail_broker.join()
    assert {key: path.read_bytes() for key, path in _files(container)} == before
    assert container.outbox._ledger.counts() == counts


def test_notices_recorded_before_an_erasure_are_never_sent(container: Container) -> None:
    """Erased before a worker got to them: each is closed unsent, for every kind of notice."""
    ada, versions = every_change(container)  # the verification mail went out meanwhile
    container.erasure.erase(str(ada), "cli:root")
    run_projections(container)  # the outbox records them and a worker tries each
    assert mails_by_key(container) == {}
    # The sign-in's mail and every notice: none sent.
    assert container.outbox._ledger.counts() == {"sent": 1, "skipped": len(versions) + 1}


def _files(container: Container) -> list[tuple[str, Any]]:
    return [(path.stem, path) for path in (container.settings.data_path / "mail").glob("*.eml")]


def test_the_outbox_records_whose_each_mail_is(container: Container) -> None:
    """A sign-in's mail is its session's event: the ledger keeps the account, for erasure."""
    verified(container)
    container.login.log_in("ada", PASSWORD, PHONE)
    run_projections(container)
    account = container.log.account_named("ada")
    assert account is not None
    keys = set(container.outbox._ledger.keys_of(account.id))
    assert keys == set(mails_by_key(container))
    assert len(keys) == 2 and any(not key.startswith(str(account.id)) for key in keys)


def test_a_ledger_from_before_it_kept_the_account_gains_it_and_its_rows_are_found(
    container: Container,
) -> None:
    """Each process migrates the ledger as it starts; a row recorded before that is found by
    its event when the event is the account's own (every mail but the sign-in's)."""
    verified(container)
    ledger: Any = container.outbox._ledger
    account = container.log.account_named("ada")
    assert account is not None
    (key,) = ledger.keys_of(account.id)
    with ledger.datastore.transaction(commit=True) as c:
        c.execute(f"DROP INDEX {ledger.table}_account")  # as it was
        c.execute(f"ALTER TABLE {ledger.table} DROP COLUMN account_id")
    ledger.create_table()  # the next start
    with ledger.datastore.transaction(commit=False) as c:
        c.execute(f"SELECT account_id FROM {ledger.table}")  # noqa: S608
        assert [row["account_id"] for row in c.fetchall()] == [None]
    assert ledger.keys_of(account.id) == [key]
    ledger.create_table()  # and every start after it: nothing more to do
    assert ledger.keys_of(account.id) == [key]
