"""A receiver that is down for the whole run (its port closed), with the service's clock moved
through the Standard Webhooks schedule: each delivery dies after its tenth try and stays
visible to admins, the endpoint is turned off after five days of failures and the admins are
told, while another endpoint gets every event at once, verified by both reference verifiers.
(The end-to-end flows cannot move a running server's clock: this runs the application with the
tests' one fake, the clock, and a real worker.)"""

from __future__ import annotations

import pytest

from application.webhooks.courier import RETRY_SCHEDULE
from domain.webhook import FAILING_FOR, EndpointSettings
from interfaces.container import Container
from tests.application.test_notices import mails_by_key, text_of
from tests.application.test_webhook_delivery import retry_due, settle
from tests.conftest import FakeClock, run_projections
from tests.http.test_api import Client, register_and_verify
from tests.http.test_read_side_api import with_role
from tests.webhooks.receiver import Receiver, closed_port
from tests.webhooks.verifiers import assert_signed

EVENTS = ("account.registered", "account.email_verified")


@pytest.fixture
def settings_environ() -> dict[str, str]:
    return {"WEBHOOK_ALLOW_HTTP_LOOPBACK": "true"}  # the receivers are local


def test_a_receiver_down_for_days_has_dead_deliveries_and_is_turned_off_others_unaffected(
    client: Client, container: Container, clock: FakeClock
) -> None:
    with_role(client, container, "root", "admin")
    down_url = closed_port()
    with Receiver() as fine:
        down = container.webhooks.create(EndpointSettings(url=down_url, events=EVENTS), "test")
        up = container.webhooks.create(EndpointSettings(url=fine.url, events=EVENTS), "test")
        person = register_and_verify(client, container, "ada")
        settle(container)
        got = [d for d in fine.accepted if d.payload["data"]["account_id"] == person["id"]]
        assert [d.type for d in got] == list(EVENTS)
        assert_signed(got, up.secret)

        # The clock through the whole schedule: the registration is tried ten times, then dead.
        for attempt in range(1, len(RETRY_SCHEDULE) + 1):
            retry_due(container, clock, attempt)
        later, dead = container.webhook_deliveries.of(str(down.id))
        assert (dead.type, dead.status, dead.next_try_at) == ("account.registered", "dead", None)
        assert dead.attempts == len(RETRY_SCHEDULE) + 1
        assert dead.last_status is None and "ConnectionRefused" in str(dead.last_error)
        # A dead delivery lets the person's next event go on, which fails in its turn.
        assert (later.type, later.status) == ("account.email_verified", "queued")
        assert later.attempts >= 1 and later.next_try_at is not None
        assert container.webhooks.endpoint(str(down.id)).enabled

        # Five days of failures turn the endpoint off; the admins are told.
        attempt = 1
        while container.webhooks.endpoint(str(down.id)).enabled:
            retry_due(container, clock, attempt)
            attempt += 1
            assert attempt <= len(RETRY_SCHEDULE) + 1, "still on after the schedule"
        shown = container.webhooks.endpoint(str(down.id))
        assert shown.disabled_reason == "failing"
        assert sum(s.total_seconds() for s in RETRY_SCHEDULE) < FAILING_FOR.total_seconds()
        run_projections(container)
        told = [
            m
            for m in mails_by_key(container).values()
            if "webhook endpoint was turned off" in str(m["Subject"])
        ]
        assert [str(m["To"]) for m in told] == ["root@example.com"]
        assert down_url in text_of(told[0])

        # The other endpoint was never held up, and is still on: a newcomer reaches it.
        assert container.webhooks.endpoint(str(up.id)).enabled
        newcomer = register_and_verify(client, container, "bob")
        settle(container)
        theirs = [d for d in fine.accepted if d.payload["data"]["account_id"] == newcomer["id"]]
        assert [d.type for d in theirs] == list(EVENTS)
        assert_signed(theirs, up.secret)
    assert len([d for d in fine.arrivals if d.status != 200]) == 0
