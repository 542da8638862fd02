"""The receivers and verifiers the webhook flows rely on, checked on their own: a body signed with
the Python library, posted to a real receiver, verified by the npm reference verifier and the
Python one; what each scripted receiver answers."""

from __future__ import annotations

import base64
import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.webhooks.receiver import (
    Receiver,
    answering,
    closed_port,
    failing_first,
    hanging,
)
from tests.webhooks.verifiers import (
    assert_not_signed_by,
    assert_signed,
    node_verdicts,
    python_verdicts,
)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode("ascii")


def post_signed(
    url: str,
    body: bytes,
    *secrets: str,
    webhook_id: str = "msg_1",
    at: datetime | None = None,
    timeout: float = 5.0,
) -> httpx.Response:
    at = at or datetime.now(UTC)
    signatures = " ".join(Webhook(s).sign(webhook_id, at, body) for s in secrets)
    return httpx.post(
        url,
        content=body,
        headers={
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signatures,
            "content-type": "application/json",
        },
        timeout=timeout,
    )


BODY = b'{"type":"account.registered","timestamp":"2026-12-07T01:00:00Z","data":{"id":"a\xc3\xa9"}}'


def test_a_signed_delivery_is_recorded_and_both_verifiers_accept_it() -> None:
    secret = new_secret()
    with Receiver() as receiver:
        assert post_signed(receiver.url, BODY, secret).status_code == 200
        (delivery,) = receiver.wait_for(1)
    assert delivery.body == BODY  # the raw bytes, as they came
    assert delivery.type == "account.registered"
    assert delivery.webhook_id == "msg_1"
    assert abs(delivery.arrived - time.time()) < 5
    assert_signed([delivery], secret)


def test_both_verifiers_refuse_a_changed_body_another_secret_and_an_old_timestamp() -> None:
    secret, other = new_secret(), new_secret()
    with Receiver() as receiver:
        post_signed(receiver.url, BODY, secret, webhook_id="msg_1")
        post_signed(
            receiver.url,
            BODY,
            secret,
            webhook_id="msg_2",
            at=datetime.now(UTC) - timedelta(hours=1),
        )
        first, old = receiver.wait_for(2)
    changed = type(first)(first.headers, BODY.replace(b"registered", b"erased"), first.arrived, 200)
    assert_not_signed_by([changed, old], secret)
    assert_not_signed_by([first], other)
    for verdicts in (node_verdicts([old], [secret]), python_verdicts([old], [secret])):
        assert "too old" in verdicts[0][secret]


def test_a_delivery_signed_by_two_secrets_verifies_with_each() -> None:
    old, new = new_secret(), new_secret()
    with Receiver() as receiver:
        post_signed(receiver.url, BODY, new, old)
        deliveries = receiver.wait_for(1)
    assert_signed(deliveries, old, new)


def test_a_flaky_receiver_refuses_each_id_once_then_accepts_it() -> None:
    secret = new_secret()
    with Receiver(failing_first(1)) as receiver:
        answers = [
            post_signed(receiver.url, BODY, secret, webhook_id=i).status_code
            for i in ("a", "b", "a", "b")
        ]
    assert answers == [500, 500, 200, 200]
    assert [d.status for d in receiver.arrivals] == answers
    assert [d.webhook_id for d in receiver.accepted] == ["a", "b"]


def test_a_gone_receiver_answers_410() -> None:
    with Receiver(answering(410)) as receiver:
        assert post_signed(receiver.url, BODY, new_secret()).status_code == 410
    assert receiver.accepted == []


def test_a_hanging_receiver_holds_the_request_past_the_sender_timeout_and_lets_go_on_close() -> (
    None
):
    receiver = Receiver(hanging(first=1)).__enter__()
    try:
        with pytest.raises(httpx.ReadTimeout):
            post_signed(receiver.url, BODY, new_secret(), timeout=0.5)
        assert [d.status for d in receiver.arrivals] == [0]  # arrived, never answered
        assert post_signed(receiver.url, BODY, new_secret()).status_code == 200
    finally:
        started = time.monotonic()
        receiver.close()
    assert time.monotonic() - started < 5


def test_a_receiver_that_is_down_refuses_the_connection() -> None:
    with pytest.raises(httpx.ConnectError):
        post_signed(closed_port(), BODY, new_secret())
