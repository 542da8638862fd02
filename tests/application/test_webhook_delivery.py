"""Webhook delivery against a real HTTP receiver on 127.0.0.1, with the service's clock moved by
hand through the retry schedule: signatures the Standard Webhooks library verifies, log order
per account held by a failing delivery, retries, dead deliveries, disabling (410, five days),
erasure in between, replay, secret rotation, and the addresses the poster refuses."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import queue
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from uuid import uuid4

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from application.ports import WebhookPost, WebhookQueue, WebhookTargetRefused
from application.webhooks.courier import RETRY_SCHEDULE
from application.webhooks.records import QueuedDelivery, Settlement, WebhookLedger
from application.webhooks.replay import REPLAY_HOLD, Replays
from domain.webhook import FAILING_FOR, EndpointSettings, Reach
from infrastructure.webhook_post import IDLE_LIMIT, MAX_ANSWER, GuardedPoster
from interfaces.container import Container, build
from interfaces.settings import Settings
from tests.application.test_notices import mails_by_key, text_of
from tests.conftest import FakeClock, run_projections
from tests.http.test_api import Client, register_and_verify
from tests.http.test_read_side_api import with_role


class Receiver:
    """A receiver that records every request and answers from a script (then `otherwise`)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.script: deque[int] = deque()
        self.otherwise = 200
        self.answer_body = b"ok"
        self.hold = threading.Event()  # cleared: every request hangs until it is set
        self.hold.set()
        # Closes each connection after its answer without saying so (no `connection: close`),
        # as a receiver whose idle timeout ran out does.
        self.close_quietly = False
        receiver = self

        self.connections: set[int] = set()  # the client ports seen: one per connection
        # Per answer, whether it was written whole (False: the client closed the connection).
        self.answered: queue.Queue[bool] = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # connections kept open between requests
            disable_nagle_algorithm = True  # headers and body written apart: no 40 ms stall

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.connections.add(self.client_address[1])
                receiver.hold.wait()
                status = receiver.script.popleft() if receiver.script else receiver.otherwise
                self.send_response(status)
                self.send_header("content-length", str(len(receiver.answer_body)))
                self.end_headers()
                try:
                    self.wfile.write(receiver.answer_body)
                    self.wfile.flush()
                except OSError:
                    receiver.answered.put(False)
                    self.close_connection = True
                    return
                receiver.answered.put(True)
                if receiver.close_quietly:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    def stop(self) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture
def other_receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture
def settings_environ() -> dict[str, str]:
    return {"WEBHOOK_ALLOW_HTTP_LOOPBACK": "true"}  # the receivers are local


def endpoint(container: Container, url: str, *events: str, personal: bool = False) -> str:
    made = container.webhooks.create(
        EndpointSettings(url=url, events=events, include_personal=personal), "test"
    )
    return made.secret


def settle(container: Container) -> None:
    """The feed to the end of the log, and every lane message taken by the worker."""
    run_projections(container)
    container.mail_broker.join(queue="webhooks")


def retry_due(container: Container, clock: FakeClock, attempt: int) -> None:
    """Moves the clock past the wait after try `attempt`, then wakes what is due."""
    clock.advance(seconds=RETRY_SCHEDULE[attempt - 1].total_seconds())
    container.webhook_feed.wake_due()
    container.mail_broker.join(queue="webhooks")


def verified(secret: str, received: tuple[dict[str, str], bytes]) -> dict[str, Any]:
    headers, body = received
    document: dict[str, Any] = Webhook(secret).verify(body, headers)
    return document


def test_events_are_delivered_signed_and_in_order(
    client: Client, container: Container, receiver: Receiver
) -> None:
    secret = endpoint(
        container, receiver.url, "account.registered", "account.email_verified", "session.started"
    )
    register_and_verify(client, container, "ada")
    client.post("/api/auth/login", json={"login": "ada", "password": "correct horse battery"})
    settle(container)
    documents = [verified(secret, r) for r in receiver.received]
    assert [d["type"] for d in documents][:2] == ["account.registered", "account.email_verified"]
    account_id = documents[0]["data"]["account_id"]
    assert all(d["data"]["account_id"] == account_id for d in documents)
    assert documents[0]["data"] == {"account_id": account_id}  # no personal fields asked for
    headers = receiver.received[0][0]
    assert headers["webhook-id"].startswith("msg_")
    assert headers["content-type"] == "application/json"
    # Another secret's signature does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(receiver.received[0][1], headers)


def test_a_failing_delivery_holds_the_accounts_later_events_until_its_retry(
    client: Client, container: Container, receiver: Receiver, clock: FakeClock
) -> None:
    secret = endpoint(container, receiver.url, "account.registered", "account.email_verified")
    receiver.script.extend([500])
    register_and_verify(client, container, "ada")
    settle(container)
    assert len(receiver.received) == 1  # the registration, refused; its successor waits
    first_id = receiver.received[0][0]["webhook-id"]
    (row_held, row_failed) = container.webhook_deliveries.of(container.webhooks.list()[0].id)
    assert row_failed.status == "queued" and row_failed.attempts == 1
    assert row_failed.last_status == 500 and row_failed.next_try_at is not None
    assert row_held.attempts == 0

    clock.advance(seconds=4)
    container.webhook_feed.wake_due()
    container.mail_broker.join(queue="webhooks")
    assert len(receiver.received) == 1  # not yet: the first retry waits 5 s

    retry_due(container, clock, 1)
    types = [verified(secret, r)["type"] for r in receiver.received]
    assert types == ["account.registered", "account.registered", "account.email_verified"]
    # The retry is the same delivery: the same id and the same body.
    assert receiver.received[1][0]["webhook-id"] == first_id
    assert receiver.received[1][1] == receiver.received[0][1]


def test_a_delivery_dies_after_the_schedule_and_five_days_of_failures_disable_the_endpoint(
    client: Client, container: Container, receiver: Receiver, clock: FakeClock
) -> None:
    endpoint(container, receiver.url, "account.registered", "account.email_verified")
    receiver.otherwise = 503
    register_and_verify(client, container, "ada")
    settle(container)
    for attempt in range(1, len(RETRY_SCHEDULE) + 1):
        retry_due(container, clock, attempt)
    # Ten tries of the registration, then the verification (the lane moved on) tried once.
    assert len(receiver.received) == len(RETRY_SCHEDULE) + 2
    webhook_id = container.webhooks.list()[0].id
    later, dead = container.webhook_deliveries.of(webhook_id)
    assert dead.status == "dead" and dead.attempts == len(RETRY_SCHEDULE) + 1
    assert dead.type == "account.registered" and dead.next_try_at is None
    assert later.status == "queued" and later.attempts == 1
    assert container.webhooks.endpoint(webhook_id).enabled

    attempt = 1
    while container.webhooks.endpoint(webhook_id).enabled:
        retry_due(container, clock, attempt)
        attempt += 1
        assert attempt <= len(RETRY_SCHEDULE) + 1
    shown = container.webhooks.endpoint(webhook_id)
    assert shown.disabled_reason == "failing"
    assert sum(step.total_seconds() for step in RETRY_SCHEDULE) < FAILING_FOR.total_seconds()
    # Disabled: nothing more is tried, however long one waits.
    tried = len(receiver.received)
    clock.advance(days=2)
    container.webhook_feed.wake_due()
    container.mail_broker.join(queue="webhooks")
    assert len(receiver.received) == tried


def test_a_hanging_receiver_holds_up_no_other_endpoint(
    client: Client, container: Container, receiver: Receiver, other_receiver: Receiver
) -> None:
    receiver.hold.clear()  # answers nothing until the end of the test
    endpoint(container, receiver.url, "account.registered")
    secret = endpoint(container, other_receiver.url, "account.registered")
    for who in ("ada", "bob", "cyd", "dan"):
        client.post(
            "/api/auth/register",
            json={"email": f"{who}@example.com", "username": who, "password": "x" * 12},
        )
    run_projections(container)  # the feed; the webhook queue is left to the worker
    deadline = time.monotonic() + 5
    while len(other_receiver.received) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(other_receiver.received) == 4
    assert all(verified(secret, r)["type"] == "account.registered" for r in other_receiver.received)
    # The hanging one holds at most its share of the worker's threads (its lanes' posts in
    # flight at once, each over a connection of its own).
    assert 1 <= len(receiver.received) <= 4
    receiver.hold.set()


@pytest.mark.parametrize("settings", ["postgres+redis"], indirect=True)
def test_a_webhook_worker_idle_for_a_while_takes_a_message_at_once(
    settings: Settings, clock: FakeClock, receiver: Receiver
) -> None:
    # Dramatiq's Redis consumer sleeps longer after each empty look, up to the worker's poll
    # (1 s by default, as `tessera worker` runs, half to all of it): a message sent after a
    # lull waited 0.4 s on average. The webhook worker's is capped.
    built = build(settings, clock=clock)
    try:
        built.mail_broker.start_worker(threads=1)
        endpoint(built, receiver.url, "account.registered")
        ledger = cast(WebhookLedger, built.webhook_feed.view)
        endpoint_id = str(built.webhooks.list()[0].id)
        waits = []
        for n in range(4):
            ledger.record([queued(endpoint_id, str(uuid4()), n)], clock.now(), None)
            time.sleep(3)  # idle: the consumer's sleeps have grown to their longest
            started = time.monotonic()
            assert built.webhook_feed.wake_due() == 1  # its message sent
            while len(receiver.received) <= n and time.monotonic() - started < 5:
                time.sleep(0.005)
            waits.append(time.monotonic() - started)
        assert len(receiver.received) == 4
        assert sum(waits) / len(waits) < 0.15  # about 0.04 s here; about 0.4 s uncapped
    finally:
        built.close()


def test_lanes_that_find_their_endpoint_busy_are_posted_by_its_courier_without_a_sweep(
    client: Client, container: Container, receiver: Receiver
) -> None:
    receiver.hold.clear()
    secret = endpoint(container, receiver.url, "account.registered")

    def register(*who: str) -> None:
        for name in who:
            client.post(
                "/api/auth/register",
                json={"email": f"{name}@example.com", "username": name, "password": "x" * 12},
            )
        run_projections(container)  # one message for the lanes of this call

    def received(count: int) -> int:
        deadline = time.monotonic() + 5
        while len(receiver.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(receiver.received)

    # Both of the endpoint's slots in this worker hang on a post...
    register("ada")
    assert received(1) == 1
    register("bob")
    assert received(2) == 2
    # ...so this message's lanes are handed to them (no sweep runs here to wake them later).
    register("cyd", "dan")
    time.sleep(0.5)  # the message taken (join would wait for the hanging two as well)
    assert len(receiver.received) == 2
    receiver.hold.set()
    assert received(4) == 4
    accounts = [verified(secret, r)["data"]["account_id"] for r in receiver.received]
    assert len(set(accounts)) == 4


class DropsTheFirst:
    """A raw receiver that closes the connection of the first post it sees unanswered (once
    `in_flight` posts are in) and answers each other post 200 (those in flight with it a
    moment later)."""

    def __init__(self, in_flight: int) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.posts = 0
        self.answered = 0
        self.in_flight = in_flight
        self._all_in = threading.Barrier(in_flight, timeout=5)
        self._dropped = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hooks"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while read_request(conn):
                with self._lock:
                    self.posts += 1
                    first = self.posts == 1
                if not self._dropped.is_set():
                    with contextlib.suppress(threading.BrokenBarrierError):
                        self._all_in.wait()
                if first:
                    self._dropped.set()
                    return  # closed without an answer
                if self._dropped.wait(5) and self.answered < self.in_flight - 1:
                    time.sleep(0.3)  # the poster has seen the drop, and ended the turn
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                with self._lock:
                    self.answered += 1

    def stop(self) -> None:
        self.listener.close()


def test_lanes_a_failure_left_untried_are_posted_at_once_not_by_the_sweep(
    container: Container, clock: FakeClock
) -> None:
    # Six lanes in one message, four posts in flight at once: the first is left without an
    # answer, which ends the turn, so two lanes are released untried. No sweep runs here.
    dropper = DropsTheFirst(in_flight=4)
    try:
        endpoint(container, dropper.url, "account.registered")
        endpoint_id = str(container.webhooks.list()[0].id)
        ledger = cast(WebhookLedger, container.webhook_feed.view)
        ledger.record([queued(endpoint_id, str(uuid4()), n) for n in range(6)], clock.now(), None)
        assert container.webhook_feed.wake_due() == 6
        container.mail_broker.join(queue="webhooks")
        assert dropper.posts == 6 and dropper.answered == 5
        rows = container.webhook_deliveries.of(container.webhooks.list()[0].id)
        assert sorted(r.status for r in rows) == ["queued"] + ["sent"] * 5
    finally:
        dropper.stop()


def test_a_hanging_endpoints_many_due_lanes_starve_no_other_endpoints_retry(
    container: Container, clock: FakeClock
) -> None:
    # A hanging endpoint's due lanes stay due (every courier slot of it is busy), and they
    # were recorded first: the sweep still wakes the other endpoint's retry.
    ledger = cast(WebhookLedger, container.webhook_feed.view)
    hanging, other = str(uuid4()), str(uuid4())

    def delivery(endpoint_id: str, position: int) -> QueuedDelivery:
        return QueuedDelivery(
            id=f"msg_{uuid4().hex}",
            endpoint_id=endpoint_id,
            account_id=str(uuid4()),
            position=position,
            type="account.registered",
            body="{}",
            sealed_personal="",
        )

    held = [delivery(hanging, i) for i in range(1500)]
    ledger.record(held, clock.now(), None)
    waiting = delivery(other, 1500)
    ledger.record([waiting], clock.now(), None)
    due = ledger.due_lanes(clock.now())
    assert waiting.lane in due
    assert len(due) <= 1000 and set(due) & {d.lane for d in held}


def queued(endpoint_id: str, account_id: str, position: int) -> QueuedDelivery:
    return QueuedDelivery(
        id=f"msg_{uuid4().hex}",
        endpoint_id=endpoint_id,
        account_id=account_id,
        position=position,
        type="account.registered",
        body="{}",
        sealed_personal="",
    )


def test_a_claim_records_the_round_before_and_takes_the_lanes_next_heads_in_one_step(
    container: Container, clock: FakeClock
) -> None:
    ledger = cast(WebhookLedger, container.webhook_feed.view)
    endpoint_id, account_id = str(uuid4()), str(uuid4())
    first, second, third = (queued(endpoint_id, account_id, n) for n in range(3))
    ledger.record([first, second, third], clock.now(), None)
    ttl = timedelta(seconds=35)
    (head,) = ledger.claim_heads([first.lane], clock.now(), ttl)
    assert head.id == first.id
    # The first answered: the same claim closes it and takes the second.
    answered = Settlement(endpoint_id, sent=[(first.id, 200)])
    (head,) = ledger.claim_heads([first.lane], clock.now(), ttl, answered)
    assert head.id == second.id
    # The second never tried: back in its lane, and the next claim takes it again.
    untried = Settlement(endpoint_id, released=[second.id])
    (head,) = ledger.claim_heads([first.lane], clock.now(), ttl, untried)
    assert head.id == second.id and head.attempts == 1
    ledger.settle(Settlement(endpoint_id, sent=[(second.id, 204)]), clock.now())
    rows = {row["id"]: row for row in ledger.of_endpoint(endpoint_id, 10)}
    assert (rows[first.id]["status"], rows[first.id]["last_status"]) == ("sent", 200)
    assert (rows[second.id]["status"], rows[second.id]["last_status"]) == ("sent", 204)
    assert rows[third.id]["status"] == "queued"


def test_the_sweep_leaves_a_just_recorded_head_to_its_own_message_but_never_a_retry(
    container: Container, clock: FakeClock
) -> None:
    ledger = cast(WebhookLedger, container.webhook_feed.view)
    endpoint_id = str(uuid4())
    fresh, failing = queued(endpoint_id, str(uuid4()), 1), queued(endpoint_id, str(uuid4()), 2)
    ledger.record([failing], clock.now(), None)
    ledger.claim_heads([failing.lane], clock.now(), timedelta(seconds=35))
    ledger.failed(failing.id, 500, "answered 500", clock.now(), clock.now() + RETRY_SCHEDULE[0])
    clock.advance(seconds=RETRY_SCHEDULE[0].total_seconds())
    ledger.record([fresh], clock.now(), None)
    quiet = timedelta(seconds=3)
    assert ledger.due_lanes(clock.now(), quiet_for=quiet) == [failing.lane]  # the retry, on time
    assert set(ledger.due_lanes(clock.now())) == {failing.lane, fresh.lane}  # resume(): all
    clock.advance(seconds=3)  # its message lost, say: the sweep wakes it now
    assert set(ledger.due_lanes(clock.now(), quiet_for=quiet)) == {failing.lane, fresh.lane}


def test_a_gone_receiver_disables_its_endpoint_at_once_and_the_admins_are_told(
    client: Client, container: Container, receiver: Receiver, clock: FakeClock
) -> None:
    with_role(client, container, "root", "admin")
    register_and_verify(client, container, "eve")  # no admin: not told
    endpoint(container, receiver.url, "account.registered", "account.email_verified")
    receiver.otherwise = 410
    register_and_verify(client, container, "ada")
    settle(container)
    assert len(receiver.received) == 1
    (shown,) = container.webhooks.list()
    assert not shown.enabled and shown.disabled_reason == "gone"
    retry_due(container, clock, 1)
    assert len(receiver.received) == 1
    run_projections(container)
    told = [
        m
        for m in mails_by_key(container).values()
        if "webhook endpoint was turned off" in str(m["Subject"])
    ]
    assert [str(m["To"]) for m in told] == ["root@example.com"]
    assert receiver.url in text_of(told[0]) and "410 Gone" in text_of(told[0])
    # Turned on again by an admin: its waiting delivery goes on.
    receiver.otherwise = 200
    container.webhooks.update(shown.id, {"enabled": True}, "test")
    container.webhook_feed.wake_due()
    container.mail_broker.join(queue="webhooks")
    assert len(receiver.received) == 2


def test_an_erasure_in_between_removes_the_personal_fields_still_to_be_sent(
    client: Client, container: Container, receiver: Receiver, clock: FakeClock
) -> None:
    secret = endpoint(
        container, receiver.url, "account.registered", "account.erased", personal=True
    )
    register_and_verify(client, container, "bob")
    settle(container)
    first = verified(secret, receiver.received[0])
    assert first["data"]["email"] == "bob@example.com" and first["data"]["username"] == "bob"

    receiver.script.extend([500])
    register_and_verify(client, container, "ada")
    settle(container)
    refused = verified(secret, receiver.received[1])
    assert refused["data"]["email"] == "ada@example.com"
    container.erasure.erase("ada", "test")
    settle(container)
    retry_due(container, clock, 1)
    documents = [verified(secret, r) for r in receiver.received[2:]]
    assert [d["type"] for d in documents] == ["account.registered", "account.erased"]
    assert documents[0]["data"] == {"account_id": refused["data"]["account_id"]}
    assert b"ada@example.com" not in b"".join(body for _, body in receiver.received[2:])


def test_personal_values_stop_once_the_endpoint_no_longer_includes_them(
    client: Client, container: Container, receiver: Receiver, clock: FakeClock
) -> None:
    secret = endpoint(
        container, receiver.url, "account.registered", "account.email_verified", personal=True
    )
    receiver.script.extend([500])
    register_and_verify(client, container, "ada")
    settle(container)
    assert verified(secret, receiver.received[0])["data"]["email"] == "ada@example.com"
    webhook_id = container.webhooks.list()[0].id
    container.webhooks.update(webhook_id, {"include_personal": False}, "test")
    retry_due(container, clock, 1)  # the retry, and the delivery queued behind it
    documents = [verified(secret, r) for r in receiver.received[1:]]
    assert [d["type"] for d in documents] == ["account.registered", "account.email_verified"]
    assert all(set(d["data"]).isdisjoint({"email", "username"}) for d in documents)
    assert b"ada@example.com" not in b"".join(body for _, body in receiver.received[1:])
    container.replays.replay(webhook_id, 0, "test")
    container.mail_broker.join(queue="webhooks")
    assert b"ada@example.com" not in b"".join(body for _, body in receiver.received[1:])


def test_queued_events_of_a_type_the_endpoint_dropped_are_not_sent(
    client: Client, container: Container, receiver: Receiver, clock: FakeClock
) -> None:
    secret = endpoint(container, receiver.url, "account.registered", "account.email_verified")
    receiver.script.extend([500])
    register_and_verify(client, container, "ada")
    settle(container)
    webhook_id = container.webhooks.list()[0].id
    container.webhooks.update(webhook_id, {"events": ["account.registered"]}, "test")
    retry_due(container, clock, 1)
    assert [verified(secret, r)["type"] for r in receiver.received] == ["account.registered"] * 2
    dropped, sent = container.webhook_deliveries.of(webhook_id)
    assert sent.status == "sent" and sent.type == "account.registered"
    assert dropped.status == "dropped" and dropped.type == "account.email_verified"
    assert dropped.attempts == 0 and dropped.next_try_at is None


def test_a_replay_sends_the_history_again_under_new_ids(
    client: Client, container: Container, receiver: Receiver
) -> None:
    register_and_verify(client, container, "ada")
    register_and_verify(client, container, "bob")
    settle(container)
    secret = endpoint(container, receiver.url, "account.registered", "account.email_verified")
    settle(container)
    assert receiver.received == []  # made after the events: fed only what comes next
    webhook_id = container.webhooks.list()[0].id
    container.replays.replay(webhook_id, 0, "test")
    container.mail_broker.join(queue="webhooks")
    documents = [verified(secret, r) for r in receiver.received]
    by_account: dict[str, list[str]] = {}
    for d in documents:
        by_account.setdefault(d["data"]["account_id"], []).append(d["type"])
    assert list(by_account.values()) == [["account.registered", "account.email_verified"]] * 2
    ids = [r[0]["webhook-id"] for r in receiver.received]
    container.replays.replay(webhook_id, 0, "test")
    container.mail_broker.join(queue="webhooks")
    again = [r[0]["webhook-id"] for r in receiver.received[len(ids) :]]
    assert len(again) == len(ids) and not set(again) & set(ids)


class DyingBroker:
    """Takes one message, then fails: the process recording a replay dies partway."""

    def __init__(self, queue: WebhookQueue) -> None:
        self.queue, self.taken = queue, 0

    def enqueue(self, lanes: list[str]) -> None:
        if self.taken:
            raise ConnectionError("the broker is gone")
        self.taken += 1
        self.queue.enqueue(lanes)


def test_a_replay_cut_short_is_finished_by_the_sweep_from_its_cursor(
    client: Client, container: Container, receiver: Receiver, clock: FakeClock
) -> None:
    for name in ("ada", "bob", "cyd"):
        register_and_verify(client, container, name)
    settle(container)
    secret = endpoint(container, receiver.url, "account.registered", "account.email_verified")
    webhook_id = container.webhooks.list()[0].id
    ledger = cast(WebhookLedger, container.webhook_feed.view)
    dying = Replays(
        container.log,
        container.webhooks,
        container.replays._publication,
        ledger,
        DyingBroker(container.replays._queue),
        clock,
        batch=2,
    )
    with pytest.raises(ConnectionError):
        dying.replay(webhook_id, 0, "test")
    container.mail_broker.join(queue="webhooks")
    assert 0 < len(receiver.received) < 6
    assert container.replays.resume() == 0  # still held by the process that died
    clock.advance(seconds=REPLAY_HOLD.total_seconds() + 1)
    assert container.replays.resume() > 0
    container.webhook_feed.wake_due()  # the rows whose message the broker refused
    container.mail_broker.join(queue="webhooks")
    by_account: dict[str, list[str]] = {}
    for d in (verified(secret, r) for r in receiver.received):
        by_account.setdefault(d["data"]["account_id"], []).append(d["type"])
    assert list(by_account.values()) == [["account.registered", "account.email_verified"]] * 3
    assert len({r[0]["webhook-id"] for r in receiver.received}) == 6
    clock.advance(seconds=REPLAY_HOLD.total_seconds() + 1)
    assert container.replays.resume() == 0  # finished: its cursor is gone


def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(
    client: Client, container: Container, receiver: Receiver, clock: FakeClock
) -> None:
    old = endpoint(container, receiver.url, "account.registered", "account.email_verified")
    webhook_id = container.webhooks.list()[0].id
    new = container.webhooks.rotate_secret(webhook_id, "test").secret
    register_and_verify(client, container, "ada")
    settle(container)
    for received in receiver.received:
        assert len(received[0]["webhook-signature"].split(" ")) == 2
        verified(old, received)
        verified(new, received)
    clock.advance(hours=24)
    register_and_verify(client, container, "bob")
    settle(container)
    last = receiver.received[-1]
    assert len(last[0]["webhook-signature"].split(" ")) == 1
    verified(new, last)
    with pytest.raises(WebhookVerificationError):
        verified(old, last)


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]:9/hooks",
        "http://localhost:9/hooks",  # a name that resolves to 127.0.0.1
        "https://[::ffff:127.0.0.1]:9/hooks",
    ],
)
def test_the_poster_refuses_private_addresses_where_it_connects(url: str) -> None:
    post = WebhookPost(url=url, headers={}, body=b"{}")
    with pytest.raises(WebhookTargetRefused):
        GuardedPoster(Reach()).post(post)


def test_loopback_is_reached_only_where_allowed_and_the_answer_is_read_bounded(
    receiver: Receiver,
) -> None:
    post = WebhookPost(url=receiver.url.replace("127.0.0.1", "localhost"), headers={}, body=b"{}")
    with pytest.raises(WebhookTargetRefused):
        GuardedPoster(Reach()).post(post)
    assert receiver.received == []
    # Far more than the sockets' buffers hold: written whole only if the poster read it all.
    receiver.answer_body = b"x" * (32 * 1024 * 1024)
    assert GuardedPoster(Reach(http_loopback=True)).post(post) == 200
    assert receiver.answered.get(timeout=10) is False  # the poster hung up after MAX_ANSWER
    receiver.answer_body = b"ok"
    receiver.otherwise = 302  # a redirect is an answer, never followed
    assert GuardedPoster(Reach(http_loopback=True)).post(post) == 302
    assert len(receiver.received) == 2


def test_posts_share_kept_connections_unless_an_answer_is_cut_short(
    receiver: Receiver,
) -> None:
    poster = GuardedPoster(Reach(http_loopback=True))
    post = WebhookPost(url=receiver.url, headers={}, body=b"{}")
    for _ in range(3):  # one call after the other: the connection is kept between them
        assert poster.post_each([post], timedelta(seconds=15)) == [200]
    assert len(receiver.connections) == 1
    receiver.answer_body = b"x" * (MAX_ANSWER + 1)  # not read to its end: not kept
    for _ in range(3):
        assert poster.post_each([post], timedelta(seconds=15)) == [200]
    assert len(receiver.connections) == 3  # the kept one, then a new one for each of the others


def test_a_connection_idle_past_its_limit_is_not_used_again(receiver: Receiver) -> None:
    poster = GuardedPoster(Reach(http_loopback=True))
    post = WebhookPost(url=receiver.url, headers={}, body=b"{}")
    assert poster.post_each([post], timedelta(seconds=15)) == [200]
    time.sleep(IDLE_LIMIT + 0.2)  # receivers close idle connections: the poster does first
    assert poster.post_each([post], timedelta(seconds=15)) == [200]
    assert len(receiver.connections) == 2


def test_a_calls_posts_are_in_flight_at_once_each_over_a_connection_of_its_own(
    receiver: Receiver,
) -> None:
    receiver.hold.clear()
    poster = GuardedPoster(Reach(http_loopback=True), connections=3)
    posts = [WebhookPost(url=receiver.url, headers={}, body=b"{}") for _ in range(5)]
    outcomes: list[Any] = []
    posting = threading.Thread(
        target=lambda: outcomes.extend(poster.post_each(posts, timedelta(seconds=15)))
    )
    posting.start()
    deadline = time.monotonic() + 5
    while len(receiver.received) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert len(receiver.received) == 3  # three held at once, never more
    receiver.hold.set()
    posting.join(timeout=10)
    assert outcomes == [200] * 5
    assert len(receiver.connections) == 3


def test_a_kept_connection_the_receiver_closed_carries_the_post_again_on_a_new_one(
    receiver: Receiver,
) -> None:
    poster = GuardedPoster(Reach(http_loopback=True))
    post = WebhookPost(url=receiver.url, headers={}, body=b"{}")
    receiver.close_quietly = True
    assert poster.post_each([post], timedelta(seconds=15)) == [200]
    time.sleep(0.1)  # the receiver has closed it by now; the poster still keeps it
    assert poster.post_each([post], timedelta(seconds=15)) == [200]
    assert len(receiver.connections) == 2


def read_request(conn: socket.socket) -> bool:
    """One whole request from a raw connection; False when the client closed it first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return True


def test_a_kept_connection_reset_within_the_answers_body_keeps_the_status_it_answered() -> None:
    # The first connection answers its first post whole and its second with 200 and 2 of 10
    # body bytes, then a reset; any later connection answers 500.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    posts: list[int] = []  # the connection (in order of arrival) of each post seen

    def serve() -> None:
        for n in itertools.count():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while read_request(conn):
                    posts.append(n)
                    if n > 0:
                        conn.sendall(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n")
                    elif posts.count(0) == 1:
                        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    else:
                        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nxx")
                        time.sleep(0.2)  # the poster has read the status and waits for more
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        break  # closed with a linger of 0: a reset

    threading.Thread(target=serve, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"
        poster = GuardedPoster(Reach(http_loopback=True))
        post = WebhookPost(url=url, headers={}, body=b"{}")
        assert poster.post_each([post], timedelta(seconds=15)) == [200]
        assert poster.post_each([post], timedelta(seconds=15)) == [200]
        assert posts == [0, 0]  # not sent again: the receiver had answered it
        # The connection the reset cut was not kept: the next post goes over a new one.
        assert poster.post_each([post], timedelta(seconds=15)) == [500]
        assert posts == [0, 0, 1]
    finally:
        listener.close()


class RaisesInTheCallingThread(str):
    """A header value http.client fails to encode in the thread that called post_each (after
    a moment, so the helper's post is in flight by then): an error no post expects."""

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        if threading.current_thread() is threading.main_thread():
            time.sleep(0.2)
            raise ValueError("unexpected")
        return str(self).encode(*args, **kwargs)


def test_an_unexpected_error_leaves_no_post_of_the_call_in_flight(receiver: Receiver) -> None:
    receiver.hold.clear()
    released: list[float] = []

    def release() -> None:
        released.append(time.monotonic())
        receiver.hold.set()

    releasing = threading.Timer(0.6, release)
    releasing.start()
    poster = GuardedPoster(Reach(http_loopback=True), connections=2)
    headers: dict[str, str] = {"x-test": RaisesInTheCallingThread("v")}
    posts = [WebhookPost(url=receiver.url, headers=headers, body=b"{}") for _ in range(2)]
    with pytest.raises(ValueError, match="unexpected"):
        poster.post_each(posts, timedelta(seconds=15))
    # The helper's post was held by the receiver: the call waited for it.
    assert released and time.monotonic() >= released[0]
    assert len(receiver.received) == 1
    releasing.join()


def test_a_connection_an_unexpected_error_closed_is_not_kept(receiver: Receiver) -> None:
    poster = GuardedPoster(Reach(http_loopback=True), connections=1)
    good = WebhookPost(url=receiver.url, headers={}, body=b"{}")
    bad = WebhookPost(url=receiver.url, headers={"x-test": "a\r\nb"}, body=b"{}")
    with pytest.raises(ValueError):  # http.client refuses the header: no OSError
        poster.post_each([good, bad], timedelta(seconds=15))
    origin = ("http", "127.0.0.1", int(receiver.url.split(":")[2].split("/")[0]))
    assert poster._idle.take(origin) is None  # the one `good` went over was closed


def test_a_kept_connection_is_closed_once_idle_past_its_limit_without_another_post() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    closed_after: list[float] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            answered = time.monotonic()
            conn.settimeout(IDLE_LIMIT + 2)
            with contextlib.suppress(OSError):
                if conn.recv(1) == b"":  # the poster closed it
                    closed_after.append(time.monotonic() - answered)

    serving = threading.Thread(target=serve, daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hooks"
        poster = GuardedPoster(Reach(http_loopback=True))
        post = WebhookPost(url=url, headers={}, body=b"{}")
        assert poster.post_each([post], timedelta(seconds=15)) == [200]
        serving.join(timeout=IDLE_LIMIT + 3)
        assert closed_after and IDLE_LIMIT - 0.1 <= closed_after[0] <= IDLE_LIMIT + 1
    finally:
        listener.close()


def test_posts_stop_starting_at_the_first_without_an_answer() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hooks"
        posts = [WebhookPost(url=url, headers={}, body=b"{}") for _ in range(5)]
        one_at_a_time = GuardedPoster(Reach(http_loopback=True), timeout=0.5, connections=1)
        first, *rest = one_at_a_time.post_each(posts, timedelta(seconds=15))
        assert isinstance(first, TimeoutError) and rest == [None] * 4
        # Two at once: both in flight time out, and no third one starts.
        two = GuardedPoster(Reach(http_loopback=True), timeout=0.5, connections=2)
        outcomes = two.post_each(posts, timedelta(seconds=15))
        assert all(isinstance(o, TimeoutError) for o in outcomes[:2])
        assert outcomes[2:] == [None] * 3
    finally:
        silent.close()


def test_a_receiver_that_hangs_times_out() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hooks"
        post = WebhookPost(url=url, headers={}, body=b"{}")
        with pytest.raises(OSError):
            GuardedPoster(Reach(http_loopback=True), timeout=0.5).post(post)
    finally:
        silent.close()


class Dribbler:
    """A raw receiver that reads the request, then writes its answer one byte every `pause`
    seconds: the headers (`headers_too`) or only the body."""

    def __init__(
        self, headers_too: bool, tls: ssl.SSLContext | None = None, pause: float = 0.1
    ) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.tls = tls
        self.headers_too, self.pause = headers_too, pause
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.listener.getsockname()[1]}/hooks"

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True)
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"
            if not self.headers_too:
                conn.sendall(head)
                head = b""
            for byte in head + b"x" * 1000:
                if self.stopped.wait(self.pause):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A receiver's TLS context with a certificate for 127.0.0.1, and a client's that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return server, ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
@pytest.mark.parametrize("headers_too", [True, False], ids=["headers", "body"])
def test_a_receiver_that_dribbles_its_answer_is_cut_off_at_the_deadline(
    headers_too: bool, tls: bool, tmp_path: Path
) -> None:
    # The timeout is what this test is about: a short one, and bytes far more often than it.
    server, trust = tls_pair(tmp_path) if tls else (None, None)
    dribbler = Dribbler(headers_too, server)
    try:
        post = WebhookPost(url=dribbler.url, headers={}, body=b"{}")
        started = time.monotonic()
        poster = GuardedPoster(Reach(http_loopback=True), timeout=1.0, trust=trust)
        if headers_too:
            with pytest.raises(TimeoutError):
                poster.post(post)
        else:  # the status came whole: it is the answer, the body cut off unread
            assert poster.post(post) == 200
        assert time.monotonic() - started < 2.0
    finally:
        dribbler.stop()
