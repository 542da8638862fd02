"""An erasure made by another process (the API's) reaches the webhook worker at once: a delivery
still to be sent carries none of the person's values, though the worker opened them a moment
before and its process still holds their key in its cache (keys are cached for 30 s)."""

from __future__ import annotations

import pytest

from domain.webhook import EndpointSettings
from interfaces.container import Container, build
from interfaces.settings import Settings
from tests.application.test_webhook_delivery import retry_due, settle
from tests.conftest import FakeClock
from tests.http.test_api import Client, register_and_verify
from tests.webhooks.receiver import Receiver, failing_first
from tests.webhooks.verifiers import assert_signed


@pytest.fixture
def settings_environ() -> dict[str, str]:
    return {"WEBHOOK_ALLOW_HTTP_LOOPBACK": "true"}  # the receivers are local


def test_a_retry_after_an_erasure_in_another_process_carries_no_personal_value(
    client: Client, container: Container, settings: Settings, clock: FakeClock
) -> None:
    with Receiver(failing_first(1)) as receiver:
        made = container.webhooks.create(
            EndpointSettings(
                url=receiver.url, events=("account.registered",), include_personal=True
            ),
            "test",
        )
        person = register_and_verify(client, container, "ada")
        settle(container)
        (refused,) = receiver.arrivals  # the worker opened the person's values to send it
        assert refused.status == 500 and refused.payload["data"]["email"] == "ada@example.com"

        elsewhere = build(settings, clock=clock)  # the API's process, with a cache of its own
        try:
            elsewhere.erasure.erase("ada", "test")
        finally:
            elsewhere.close()
        retry_due(container, clock, 1)
        retried = receiver.accepted
        assert_signed(receiver.arrivals, made.secret)
    assert [d.webhook_id for d in retried] == [refused.webhook_id]
    assert retried[0].payload["data"] == {"account_id": person["id"]}
    assert b"ada" not in retried[0].body
