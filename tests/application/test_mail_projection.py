"""Mail from events: the outbox projection, the delivery ledger, and the postman."""

from __future__ import annotations

import contextlib
import email
import email.policy
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pyotp
import pytest

from application.factors.reauthentication import Proof
from application.views import Client, TokenPair
from domain.errors import InvalidCredentials
from interfaces.container import Container, build
from tests.application.test_use_cases import PASSWORD, verified
from tests.conftest import FakeClock, authenticated, run_projections


def mails(container: Container) -> list[EmailMessage]:
    found = []
    for path in sorted((container.settings.data_path / "mail").glob("*.eml")):
        found.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    return found  # type: ignore[return-value]


def subjects(container: Container) -> list[str]:
    return sorted(str(m["Subject"]) for m in mails(container))


def ledger_counts(container: Container) -> dict[str, int]:
    return container.outbox._ledger.counts()


def test_a_restarted_projector_resumes_where_it_stopped(
    container: Container, clock: FakeClock
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    run_projections(container)
    assert len(mails(container)) == 1

    restarted = build(container.settings, clock=clock)
    restarted.mail_broker.start_worker(threads=1, poll_ms=20)
    try:
        run_projections(restarted)
        assert len(mails(container)) == 1, "a restart must not resend what was tracked"
        restarted.registration.register("bob@example.com", "bob", PASSWORD)
        run_projections(restarted)
        assert len(mails(container)) == 2
        assert ledger_counts(restarted) == {"sent": 2}
    finally:
        restarted.close()


def test_a_crash_between_recording_and_enqueueing_is_recovered_by_the_sweep(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)

    class Killed(BaseException):
        """Stands for the process dying after the ledger commit, before the message went out."""

    def die(key: str) -> None:
        raise Killed

    monkeypatch.setattr(container.mail_broker, "enqueue", die)
    projector = container.projector("mail_outbox")
    with pytest.raises(Killed):
        projector.run_once()
    monkeypatch.undo()
    run_projections(container)  # the event is tracked: nothing more comes from the projection
    assert mails(container) == []
    assert ledger_counts(container) == {"queued": 1}

    assert container.outbox.redeliver_stale(older_than=timedelta(0)) == 1
    container.mail_broker.join()
    assert len(mails(container)) == 1
    assert ledger_counts(container) == {"sent": 1}


def test_a_key_delivered_twice_sends_once(container: Container) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    run_projections(container)
    (path,) = (container.settings.data_path / "mail").glob("*.eml")
    path.unlink()  # were a second copy sent, it would appear again
    for _ in range(3):
        container.mail_broker.enqueue(path.stem)
    container.mail_broker.join()
    assert mails(container) == []


def test_a_claim_left_by_a_dead_worker_expires_and_the_mail_goes_once(
    container: Container, clock: FakeClock
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    projector = container.projector("mail_outbox")
    container.mail_broker.stop()  # no worker: the message waits
    while projector.run_once():
        pass
    (key,) = container.outbox._ledger.stale(clock.now(), timedelta(0))
    # A worker claims the delivery and dies before sending.
    assert container.outbox._ledger.claim(key, clock.now(), timedelta(minutes=1)) is not None
    from application.ports import DeliveryBusy

    with pytest.raises(DeliveryBusy):
        container.postman.deliver(key)
    clock.advance(minutes=2)
    assert container.postman.deliver(key) == "verification"
    assert container.postman.deliver(key) is None
    assert len(mails(container)) == 1


def test_security_events_mail_the_account_holder(container: Container, clock: FakeClock) -> None:
    verified(container)
    client = Client(ip="198.51.100.7", user_agent="<script>alert(1)</script>")
    tokens = container.login.log_in("ada", PASSWORD, client)
    assert isinstance(tokens, TokenPair)
    claims = authenticated(container, tokens.access_token)
    container.passwords.change(claims, PASSWORD, "a brand new passphrase")
    enrollment = container.mfa.enroll(claims)
    container.mfa.confirm(claims, pyotp.TOTP(enrollment.secret).at(clock.now().timestamp()))
    clock.advance(seconds=30)  # the confirming code is spent
    code = pyotp.TOTP(enrollment.secret).at(clock.now().timestamp())
    container.mfa.disable(claims, Proof("a brand new passphrase", code))
    for _ in range(5):
        with contextlib.suppress(InvalidCredentials):
            container.login.log_in("ada", "wrong password!", Client())
    run_projections(container)
    assert subjects(container) == sorted(
        [
            "Verify your email address for Tessera",
            "New sign-in to your Tessera account",
            "Your Tessera password was changed",
            "Two-step sign-in is on for your Tessera account",
            "Two-step sign-in is off for your Tessera account",
            "Your Tessera account is locked for a while",
        ]
    )
    for message in mails(container):
        assert message["To"] == "ada@example.com"
        assert message.get_body(("plain",)) is not None
        assert message.get_body(("html",)) is not None
    (sign_in,) = [m for m in mails(container) if "sign-in to" in str(m["Subject"])]
    html = sign_in.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "198.51.100.7" in sign_in.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_sign_in_mails_can_be_turned_off(tmp_path: Path, clock: FakeClock) -> None:
    from interfaces.settings import load_settings
    from tests.conftest import FAST_ARGON2

    container = build(
        load_settings({**FAST_ARGON2, "DATA_DIR": str(tmp_path), "NOTIFY_NEW_SIGN_IN": "false"}),
        clock=clock,
    )
    container.mail_broker.start_worker(threads=1, poll_ms=20)
    try:
        verified(container)
        container.login.log_in("ada", PASSWORD, Client())
        run_projections(container)
        assert subjects(container) == ["Verify your email address for Tessera"]
    finally:
        container.close()


def test_the_trace_context_travels_with_the_event_and_the_message(
    container: Container, spans: Any
) -> None:
    spans.clear()
    container.registration.register("ada@example.com", "ada", PASSWORD)
    run_projections(container)
    finished = {s.name: s for s in spans.get_finished_spans()}
    use_case, enqueue, deliver = (
        finished["Registration.register"],
        finished["mail.enqueue"],
        finished["mail.deliver"],
    )
    assert enqueue.context.trace_id == use_case.context.trace_id  # through the stored event
    assert deliver.context.trace_id == use_case.context.trace_id  # through the message
    assert deliver.parent is not None and deliver.parent.span_id == enqueue.context.span_id


def test_the_queue_depth_gauge_counts_undelivered_mail(container: Container) -> None:
    from prometheus_client import REGISTRY

    container.registration.register("ada@example.com", "ada", PASSWORD)
    container.mail_broker.stop()
    projector = container.projector("mail_outbox")
    while projector.run_once():
        pass
    assert REGISTRY.get_sample_value("tessera_email_queue_depth") == 1
