"""How long a delivery stays a worker's: a claim renewed while its SMTP conversation lasts (and no
longer than one can last), and the outbox's mend of a projector that died between recording a
delivery and enqueuing it. The claim's length is what the first tests are about, so they shorten
it; time past it is moved on the fake clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from application.mail.outbox import MailSettings, Postman
from application.ports import DeliveryBusy, OutgoingMail
from infrastructure.keys import load_secret_key
from infrastructure.mail_render import TemplateRenderer
from infrastructure.secret_box import AesGcmBox
from interfaces.container import Container
from tests.application.test_mail_projection import ledger_counts, mails
from tests.application.test_use_cases import PASSWORD
from tests.conftest import FakeClock, run_projections

# Claims of 0.3 s renewed in real time: a starved renewal would lose its claim.
pytestmark = pytest.mark.serial

CLAIM = timedelta(seconds=0.3)


class SlowServer:
    """A mail server that thinks about each mail until the test lets it go."""

    def __init__(self) -> None:
        self.talking, self.done = threading.Event(), threading.Event()
        self.sent: list[OutgoingMail] = []

    def send(self, mail: OutgoingMail) -> None:
        self.talking.set()
        assert self.done.wait(10)
        self.sent.append(mail)


def postman(
    container: Container, clock: FakeClock, transport: object, **claim: timedelta
) -> Postman:
    """Another worker's postman, on the same ledger and event store."""
    settings = container.settings
    return Postman(
        container.log,
        container.outbox._ledger,
        TemplateRenderer(),
        transport,  # type: ignore[arg-type]
        AesGcmBox(load_secret_key(settings.secret_key, settings.data_path / "secret.key")),
        clock,
        MailSettings(settings.public_url, settings.product_name, claim_ttl=CLAIM, **claim),
    )


@pytest.fixture
def queued_key(container: Container) -> str:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    container.mail_broker.stop()  # no worker: the delivery waits in the ledger
    container.projector("mail_outbox").catch_up()
    (key,) = container.outbox._ledger.unclaimed()
    return key


@pytest.fixture
def sending(
    container: Container, clock: FakeClock, queued_key: str
) -> Iterator[Callable[..., SlowServer]]:
    threads: list[threading.Thread] = []
    servers: list[SlowServer] = []

    def start(**claim: timedelta) -> SlowServer:
        server = SlowServer()
        slow = postman(container, clock, server, **claim)
        thread = threading.Thread(target=slow.deliver, args=(queued_key,))
        thread.start()
        assert server.talking.wait(10)
        threads.append(thread)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.done.set()
    for thread in threads:
        thread.join(10)


def test_a_conversation_that_outlasts_the_claim_keeps_it(
    container: Container, clock: FakeClock, queued_key: str, sending: Callable[..., SlowServer]
) -> None:
    server = sending()
    clock.advance(minutes=1)  # far past the claim as taken
    time.sleep(3 * CLAIM.total_seconds())  # the renewals come in real time
    other = SlowServer()
    other.done.set()
    with pytest.raises(DeliveryBusy):
        postman(container, clock, other).deliver(queued_key)
    server.done.set()
    deadline = time.monotonic() + 5
    while ledger_counts(container) != {"sent": 1}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert postman(container, clock, other).deliver(queued_key) is None
    assert len(server.sent) == 1 and other.sent == []


def test_a_conversation_hung_past_the_longest_send_loses_its_claim(
    container: Container, clock: FakeClock, queued_key: str, sending: Callable[..., SlowServer]
) -> None:
    sending(longest_send=timedelta(seconds=30))
    clock.advance(minutes=1)
    time.sleep(3 * CLAIM.total_seconds())
    other = SlowServer()
    other.done.set()
    assert postman(container, clock, other).deliver(queued_key) == "verification"
    assert len(other.sent) == 1


def test_a_projector_that_died_before_enqueuing_is_mended_by_the_next_holder(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)

    class Killed(BaseException):
        """Stands for the process dying after the ledger commit, before the message went out."""

    def die(key: str) -> None:
        raise Killed

    monkeypatch.setattr(container.mail_broker, "enqueue", die)
    with pytest.raises(Killed):
        container.projector("mail_outbox").run_once()
    monkeypatch.undo()
    run_projections(container)  # tracked: reading on brings nothing more
    assert mails(container) == []

    # Takes the lease, as a restart would.
    run_outbox_until_mailed(container, "the recorded mail was never enqueued")
    container.mail_broker.join()
    assert len(mails(container)) == 1
    assert ledger_counts(container) == {"sent": 1}


def test_a_broker_that_refuses_an_enqueue_loses_no_mail(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    container.registration.register("ada@example.com", "ada", PASSWORD)
    enqueue = container.mail_broker.enqueue
    refusals = []

    def refuse_once(key: str) -> None:
        if not refusals:
            refusals.append(key)
            raise ConnectionError("Redis went away")
        enqueue(key)

    monkeypatch.setattr(container.mail_broker, "enqueue", refuse_once)
    run_outbox_until_mailed(container, "the refused mail was never enqueued")
    assert refusals
    container.mail_broker.join()
    assert len(mails(container)) == 1


def run_outbox_until_mailed(container: Container, failure: str) -> None:
    """Runs the mail outbox's projector, as `tessera projector` does, until a mail is out."""
    stop = threading.Event()
    running = container.projector("mail_outbox").start(stop)
    try:
        deadline = time.monotonic() + 10
        while len(mails(container)) < 1:
            assert time.monotonic() < deadline, failure
            time.sleep(0.05)
    finally:
        stop.set()
        running.join(10)
