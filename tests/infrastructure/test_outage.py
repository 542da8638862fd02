"""The database is down: the event store and the denylist say so at once (Unavailable, a 503)
instead of each request waiting out the persistence library's retries, and they notice by
themselves when it is back. A mail that meets the outage is retried, never dead-lettered."""

from __future__ import annotations

import threading
import time

import pytest
from eventsourcing.persistence import OperationalError

from application.persistence.event_log import Outage
from application.ports import TransientMailError, Unavailable
from infrastructure.broker import RetryPolicy, _retry_when


@pytest.mark.serial  # 100 refusals within 0.1 s: alone
def test_after_one_failure_calls_are_refused_at_once_until_the_probe_succeeds() -> None:
    store_up = threading.Event()

    def probe() -> int:
        if not store_up.is_set():
            raise OperationalError("connection refused")
        return 1

    outage = Outage(probe, interval=0.01)
    outage.check()  # nothing known: calls go through
    outage.failed(OperationalError("couldn't get a connection after 2.00 sec"))
    started = time.monotonic()
    for _ in range(100):
        with pytest.raises(Unavailable):
            outage.check()
    assert time.monotonic() - started < 0.1
    time.sleep(0.1)
    assert outage.down, "the probe keeps failing while the store is down"
    store_up.set()
    deadline = time.monotonic() + 5
    while outage.down and time.monotonic() < deadline:
        time.sleep(0.01)
    outage.check()  # recovered without anyone restarting anything


def test_a_database_outage_is_a_reason_to_retry_a_mail_and_a_bounce_is_not() -> None:
    retry = _retry_when(RetryPolicy(max_retries=3))
    assert retry(0, OperationalError("server closed the connection"))
    assert retry(0, Unavailable("event store"))
    assert retry(0, TransientMailError("451"))
    assert not retry(3, OperationalError("still down"))  # retries are bounded all the same
    assert not retry(0, ValueError("a bug is no reason to send again"))
