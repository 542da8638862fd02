"""Webhooks end to end, through real server processes, on the embedded default (one `tessera
serve` on SQLite) and on production's shape (`serve`, `projector` and `worker` on PostgreSQL and
Redis): real receivers on 127.0.0.1 (tests/webhooks/receiver.py) get the events, and every
delivery is verified with npm's reference Standard Webhooks verifier and the Python one, before
anything else is looked at (their timestamps are checked against the real clock)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.webhooks.deployment import (
    PASSWORD,
    Deployment,
    Person,
    deployed,
    eventually,
    of,
    types,
)
from tests.webhooks.receiver import (
    Delivery,
    Receiver,
    answering,
    closed_port,
    failing_first,
    hanging,
)
from tests.webhooks.verifiers import assert_not_signed_by, assert_signed

NEW_PASSWORD = "a wholly different passphrase 2026"
PERSONAL = ("email", "username", "display_name")
FIRST_RETRY = 5.0  # seconds: the first step of the Standard Webhooks schedule
TIMEOUT = 15.0  # seconds the service waits on a receiver's answer

Json = dict[str, Any]


@pytest.fixture(scope="module", params=["sqlite", "postgres+redis"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    postgres = request.getfixturevalue("postgres") if request.param != "sqlite" else None
    directory = tmp_path_factory.mktemp(f"webhooks-{request.param.replace('+', '-')}")
    with deployed(request.param, directory, postgres) as made:
        yield made


@pytest.fixture(autouse=True)
def endpoints_removed(deployment: Deployment) -> Iterator[None]:
    yield
    deployment.remove_endpoints()


def delivered(
    receiver: Receiver,
    person: Person,
    last: str,
    timeout: float = 30.0,
    skip: frozenset[str] = frozenset(),
) -> list[Delivery]:
    """The person's accepted deliveries once one of type `last` is in (ids in `skip` left out),
    and half a second more: a late or doubled delivery, were one coming, would be in by then."""

    def arrived() -> list[Delivery]:
        got = [d for d in of(person, receiver.accepted) if d.webhook_id not in skip]
        return got if last in types(got) else []

    eventually(arrived, timeout=timeout, what=f"{last} at {receiver.url}")
    time.sleep(0.5)
    return arrived()


def deliveries_of(deployment: Deployment, endpoint_id: str, person: Person) -> list[Json]:
    """The person's deliveries as the admin API lists them, in the log's order."""
    listed = [d for d in deployment.deliveries(endpoint_id) if d["account_id"] == person.id]
    return sorted(listed, key=lambda d: int(d["position"]))


def test_a_life_from_registration_to_erasure_is_delivered_in_order(
    deployment: Deployment,
) -> None:
    with Receiver() as personal, Receiver() as plain:
        personal_id, personal_secret = deployment.endpoint(personal.url, include_personal=True)
        _, plain_secret = deployment.endpoint(plain.url)

        person = deployment.register("ada")
        with deployment.http as http:
            named = http.put(
                "/api/users/me", json={"display_name": "Ada Lovelace"}, headers=person.auth
            )
            assert named.status_code == 200, named.text
            # The person's values are added when a delivery is sent, and never after the
            # erasure: wait for this one to be sent, so that it is sent with the name.
            delivered(personal, person, "account.profile_updated")
            changed = http.put(
                "/api/users/me/password",
                json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
                headers=person.auth,
            )
            assert changed.status_code == 204, changed.text
            auth = deployment.sign_in(person.username, NEW_PASSWORD)
            assert http.post("/api/auth/logout", headers=auth).status_code == 204
            auth = deployment.sign_in(person.username, NEW_PASSWORD)
            erased = http.request(
                "DELETE", "/api/users/me", json={"password": NEW_PASSWORD}, headers=auth
            )
            assert erased.status_code == 204, erased.text

        mine = delivered(personal, person, "account.erased")
        theirs = delivered(plain, person, "account.erased")
        assert_signed(mine, personal_secret)
        assert_signed(theirs, plain_secret)
        assert_not_signed_by(theirs, personal_secret)

        # After the erasure no delivery names the person, not even a replay of their life.
        replayed = deployment.admin_call("POST", f"/{personal_id}/replay", json={"since": 1})
        assert replayed.status_code in (200, 202), replayed.text
        again = delivered(
            personal, person, "account.erased", skip=frozenset(d.webhook_id for d in mine)
        )
        assert_signed(again, personal_secret)

    # Both endpoints got the same events, in the log's order, each once.
    got = types(mine)
    assert got == types(theirs)
    assert got[:3] == ["account.registered", "account.email_verified", "session.started"]
    assert got[-1] == "account.erased"
    assert got.count("account.erased") == 1
    for kind in ("account.profile_updated", "account.password_changed", "session.ended"):
        assert kind in got, got
    assert got.index("account.profile_updated") < got.index("account.password_changed")
    assert len({d.webhook_id for d in mine}) == len(mine)
    stamps = [d.payload["timestamp"] for d in mine]
    assert stamps == sorted(stamps)
    # Ids, kinds and times for everyone; personal fields only for the endpoint that asked.
    registered = mine[0].payload["data"]
    assert (registered["email"], registered["username"]) == (person.email, person.username)
    assert mine[got.index("account.profile_updated")].payload["data"]["display_name"] == (
        "Ada Lovelace"
    )
    assert not any(name in d.payload["data"] for d in theirs for name in PERSONAL)
    assert {d.payload["data"]["account_id"] for d in theirs} == {person.id}
    # The replay: the same events in the same order, under new ids, without the person.
    assert types(again) == got
    assert not any(name in d.payload["data"] for d in again for name in PERSONAL)


def test_a_new_endpoint_replays_history_from_the_first_event(deployment: Deployment) -> None:
    with Receiver() as early, Receiver() as late:
        _, early_secret = deployment.endpoint(early.url)
        person = deployment.register("grace")
        first = delivered(early, person, "session.started")
        assert_signed(first, early_secret)

        late_id, late_secret = deployment.endpoint(late.url)
        time.sleep(1.0)
        assert of(person, late.arrivals) == []  # a new endpoint starts at the end of the log
        replayed = deployment.admin_call("POST", f"/{late_id}/replay", json={"since": 1})
        assert replayed.status_code in (200, 202), replayed.text
        again = delivered(late, person, "session.started")
        assert_signed(again, late_secret)
    assert types(again) == types(first)
    assert [d.payload for d in again] == [d.payload for d in first]
    # New ids, so a receiver that drops the ids it has seen takes the replay.
    assert not {d.webhook_id for d in again} & {d.webhook_id for d in first}


def test_during_a_rotation_each_delivery_verifies_with_the_old_and_the_new_secret(
    deployment: Deployment,
) -> None:
    with Receiver() as receiver:
        endpoint_id, old = deployment.endpoint(receiver.url)
        rotated = deployment.admin_call("POST", f"/{endpoint_id}/secret")
        assert rotated.status_code in (200, 201), rotated.text
        new = str(rotated.json()["secret"])
        assert new.startswith("whsec_") and new != old
        person = deployment.register("rotating", verify=False, sign_in=False)
        got = delivered(receiver, person, "account.registered")
        assert_signed(got, old, new)


def test_failing_receivers_are_retried_in_order_and_hold_up_no_other_endpoint_nor_mail(
    deployment: Deployment,
) -> None:
    """One receiver answers each event 500 once, one hangs past the timeout on the first, one
    is down for the whole run, one answers 410 Gone; another, fine, gets everything at once, and
    so does the mail."""
    with (
        Receiver(failing_first(1)) as flaky,
        Receiver(hanging(first=1)) as stuck,
        Receiver(answering(410)) as gone,
        Receiver() as fine,
    ):
        flaky_id, flaky_secret = deployment.endpoint(flaky.url)
        stuck_id, stuck_secret = deployment.endpoint(stuck.url)
        gone_id, gone_secret = deployment.endpoint(gone.url)
        down_id, _ = deployment.endpoint(closed_port())
        _, fine_secret = deployment.endpoint(fine.url)
        started = time.monotonic()
        # The verification mail arrives, the person verifies and signs in (register waits).
        person = deployment.register("patient")
        # Well before the hung delivery's timeout and retry (20 s) could let anything through.
        quick = delivered(fine, person, "session.started", timeout=TIMEOUT)
        assert time.monotonic() - started < TIMEOUT
        assert_signed(quick, fine_secret)
        expected = ["account.registered", "account.email_verified", "session.started"]
        assert types(quick) == expected
        # Each refused event is retried after the first step of the schedule; the hung one is
        # given up after the timeout and retried; the rest follow, in order.
        retried = delivered(flaky, person, "session.started", timeout=60)
        flaky_arrivals = of(person, flaky.arrivals)
        late = delivered(stuck, person, "session.started", timeout=TIMEOUT + FIRST_RETRY + 30)
        stuck_arrivals = of(person, stuck.arrivals)
        assert_signed(flaky_arrivals, flaky_secret)
        assert_signed(stuck_arrivals, stuck_secret)
        # 410 Gone turns the endpoint off at once: nothing more is sent to it, admins are told.
        told = eventually(
            lambda: [m for m in deployment.mail_to(deployment.admin_email) if gone.url in m],
            what="the admins' mail about the endpoint turned off",
        )
        gone_arrivals = of(person, gone.arrivals)
        assert_signed(gone_arrivals, gone_secret)
    assert types(retried) == types(late) == expected
    assert [(d.type, d.status) for d in gone_arrivals] == [("account.registered", 410)]
    assert "410 Gone" in told[0]
    shown = deployment.admin_call("GET", f"/{gone_id}").json()
    assert (shown["enabled"], shown["disabled_reason"]) == (False, "gone")

    # Refused, retried, taken; and only then the next event of the person.
    assert [(d.type, d.status) for d in flaky_arrivals] == [
        (kind, status) for kind in expected for status in (500, 200)
    ]
    for refused, taken in zip(flaky_arrivals[::2], flaky_arrivals[1::2], strict=True):
        assert (taken.webhook_id, taken.body) == (refused.webhook_id, refused.body)
        assert taken.arrived - refused.arrived >= FIRST_RETRY - 0.5
    hung, again = stuck_arrivals[0], stuck_arrivals[1]
    assert hung.status == 0 and again.status == 200
    assert (again.webhook_id, again.body) == (hung.webhook_id, hung.body)
    assert again.arrived - hung.arrived >= TIMEOUT + FIRST_RETRY - 1

    # What admins see: each try; and the receiver that never answered, whose first event waits
    # for its next try and holds the person's later ones back.
    flaky_log = deliveries_of(deployment, flaky_id, person)
    assert [(d["type"], d["status"], d["attempts"], d["last_status"]) for d in flaky_log] == [
        (kind, "sent", 2, 200) for kind in expected
    ]
    assert [d["id"] for d in flaky_log] == [d.webhook_id for d in retried]
    stuck_log = deliveries_of(deployment, stuck_id, person)
    assert [(d["status"], d["attempts"]) for d in stuck_log] == [
        ("sent", 2),
        ("sent", 1),
        ("sent", 1),
    ]
    first, *held = deliveries_of(deployment, down_id, person)
    assert (first["type"], first["status"], first["last_status"]) == (
        "account.registered",
        "queued",
        None,
    )
    assert first["attempts"] >= 1 and "ConnectionRefused" in first["last_error"]
    assert first["next_try_at"] > first["updated_at"]
    assert [(d["status"], d["attempts"]) for d in held] == [("queued", 0), ("queued", 0)]


def test_killing_the_worker_and_the_projector_mid_delivery_loses_nothing(
    deployment: Deployment,
) -> None:
    """kill -9 at the default settings: the worker while a delivery is on the wire; the
    projector after it recorded deliveries and before it handed them to Redis. Every event
    arrives; a retry sends the first attempt's body under the same id."""
    if deployment.kind == "sqlite":
        pytest.skip("one process does everything on the embedded default")
    assert deployment.redis is not None
    with Receiver(hanging(first=1)) as receiver:
        endpoint_id, secret = deployment.endpoint(receiver.url)
        person = deployment.register("killed", verify=False, sign_in=False)
        receiver.wait_for(1, accepted=False)  # on the wire, and the receiver holds it
        deployment.kill("worker")
        killed = time.monotonic()
        deployment.start("worker", "worker")
        first = delivered(receiver, person, "account.registered", timeout=120)
        after_worker = time.monotonic() - killed

        # The projector records the crowd's deliveries, then waits on a stopped Redis to
        # enqueue them, and dies there.
        deployment.kill("projector")
        people = [deployment.register(f"crowd{n}", verify=False, sign_in=False) for n in range(10)]
        before = deployment.recorded(endpoint_id)
        deployment.redis.process.send_signal(signal.SIGSTOP)
        try:
            deployment.start("projector", "projector")
            eventually(
                lambda: deployment.recorded(endpoint_id) >= before + len(people),
                what="the projector to record the crowd's deliveries",
            )
            time.sleep(0.5)
            deployment.kill("projector")
        finally:
            deployment.redis.process.send_signal(signal.SIGCONT)
        assert not any(of(p, receiver.arrivals) for p in people), "sent before the kill"
        killed = time.monotonic()
        deployment.start("projector", "projector")
        for someone in people:
            delivered(receiver, someone, "account.registered", timeout=120)
        after_projector = time.monotonic() - killed
        arrivals = [d for d in receiver.arrivals if d.status]
        assert_signed(arrivals, secret)

    hung, retried = of(person, receiver.arrivals)[:2]
    assert first == [retried]
    assert (retried.webhook_id, retried.body) == (hung.webhook_id, hung.body)
    # At least once: a copy may come again, always under its id with the first body.
    bodies: dict[str, bytes] = {}
    for delivery in arrivals:
        assert bodies.setdefault(delivery.webhook_id, delivery.body) == delivery.body
    assert all(types(of(p, receiver.accepted)) == ["account.registered"] for p in people)
    print(
        f"\nworker killed mid-delivery: retried {after_worker:.1f} s later; projector killed "
        f"before an enqueue: all {len(people)} delivered {after_projector:.1f} s after its restart"
    )
