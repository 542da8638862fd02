"""Webhooks with real processes on PostgreSQL and Redis: the endpoint made by `tessera admin
webhook create`, the event recorded by `tessera serve`, queued by `tessera projector`, posted
by `tessera worker`, and verified by the Standard Webhooks library."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import pytest
from standardwebhooks.webhooks import Webhook

from tests.application.test_webhook_delivery import Receiver
from tests.e2e.test_mail_delivery import Stack, eventually, stack_for
from tests.e2e.test_serve import tessera
from tests.smtp import ScriptedHandler

__all__ = ["stack_for"]  # the fixture, shared with the mail delivery tests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def test_a_registration_is_posted_signed_by_the_worker(
    stack_for: Callable[..., Stack], receiver: Receiver
) -> None:
    stack = stack_for(ScriptedHandler(), WEBHOOK_ALLOW_HTTP_LOOPBACK="true")
    made = subprocess.run(
        [tessera(), "admin", "webhook", "create", receiver.url, "--event", "account.registered"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=True,
    )
    secret = json.loads(made.stdout)["secret"]
    stack.register("ada")
    eventually(lambda: len(receiver.received) == 1)
    headers, body = receiver.received[0]
    document = Webhook(secret).verify(body, headers)
    assert document["type"] == "account.registered"
