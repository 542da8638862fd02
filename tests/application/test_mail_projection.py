"""The verification mail projection: tracked, resumable, one mail per event."""

from __future__ import annotations

from pathlib import Path

import pytest

from interfaces.container import Container, build
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock, run_projections


def mails(container: Container) -> list[Path]:
    return sorted((container.settings.data_path / "mail").glob("*.eml"))


def test_a_restarted_projector_resumes_where_it_stopped(
    container: Container, clock: FakeClock
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    run_projections(container)
    assert len(mails(container)) == 1

    restarted = build(container.settings, clock=clock)
    try:
        run_projections(restarted)
        assert len(mails(container)) == 1, "a restart must not resend what was tracked"
        restarted.registration.register("bob@example.com", "bob", PASSWORD)
        run_projections(restarted)
        assert len(mails(container)) == 2
    finally:
        restarted.close()


def test_a_crash_between_sending_and_tracking_sends_no_second_copy(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    (projector,) = container.projectors
    view = projector._projection.view

    class Killed(BaseException):
        """Stands for the process dying after the mail went out, before its position was saved."""

    def die(*_: object) -> None:
        raise Killed

    monkeypatch.setattr(view, "insert_tracking", die)
    with pytest.raises(Killed):
        projector.run_once()
    assert len(mails(container)) == 1
    monkeypatch.undo()

    run_projections(container)  # the event is processed again: same key, same file
    assert len(mails(container)) == 1
    assert projector.position > 0


def test_only_verification_requests_make_mail(container: Container) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    container.registration.resend_verification("ada@example.com")
    run_projections(container)
    assert len(mails(container)) == 2
    (projector,) = container.projectors
    requests = [
        n.id
        for n in container.log.recorder.select_notifications(start=1, limit=100)
        if n.topic.endswith("EmailVerificationRequested")
    ]
    assert projector.position == requests[-1]
