"""The hash gate's fair share, without timing anything: real argon2 behind a door each hash
waits at until the test opens it, so which hashes the gate lets in, refuses, and lets in next
is seen in order. One client address, or one signed-in account from many addresses, keeps at
most its share of the queue, and another's hash is the next to get a slot."""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from uuid import uuid4

import pytest

from application.origin import CallerSlot, current_caller, current_client
from application.ports import Overloaded
from application.views import Client
from infrastructure.hash_gate import HashGate
from infrastructure.passwords import Argon2Hasher, Argon2Parameters

FAST = Argon2Parameters(time_cost=1, memory_cost=1024, parallelism=1)
HASH = Argon2Hasher(FAST).hash("the right password")


class Doors:
    """Real argon2, each verify held at a door named by its password until the test opens it."""

    def __init__(self) -> None:
        self._real = Argon2Hasher(FAST)
        self.entered: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._doors: dict[str, threading.Event] = {}

    def _door(self, name: str) -> threading.Event:
        with self._lock:
            return self._doors.setdefault(name, threading.Event())

    def open(self, *names: str) -> None:
        for name in names:
            self._door(name).set()

    def hash(self, password: str) -> str:
        return self._real.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        self.entered.put(password)
        assert self._door(password).wait(timeout=30), f"{password} was never let through"
        return self._real.verify(password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return False


class Attempts:
    """Threads verifying through the gate, each as a request of its own client (and caller)."""

    def __init__(self, gate: HashGate) -> None:
        self.gate = gate
        self.outcomes: dict[str, str] = {}
        self.threads: dict[str, threading.Thread] = {}

    def start(self, name: str, ip: str, account: object = None) -> None:
        def request() -> None:
            current_client.set(Client(ip=ip))
            slot = CallerSlot()
            slot.account_id = account  # type: ignore[assignment]
            current_caller.set(slot)
            try:
                self.gate.verify(HASH, name)
                self.outcomes[name] = "hashed"
            except Overloaded:
                self.outcomes[name] = "refused"

        thread = threading.Thread(target=contextvars.Context().run, args=(request,))
        self.threads[name] = thread
        thread.start()

    def refused_at_once(self, name: str) -> bool:
        self.threads[name].join(timeout=10)
        return self.outcomes.get(name) == "refused"

    def join(self) -> None:
        for thread in self.threads.values():
            thread.join(timeout=30)


def until(condition: Callable[[], bool]) -> None:
    """Waits for a state the threads reach by themselves (never asserts on how long)."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the gate never reached the expected state"
        time.sleep(0.005)


@pytest.fixture
def doors() -> Iterator[Doors]:
    opened = Doors()
    yield opened
    opened.open(*(f"{who}{n}" for who in ("flood", "other") for n in range(8)))


def test_one_address_keeps_its_share_and_another_address_is_not_held_up(doors: Doors) -> None:
    gate = HashGate(doors, slots=2, queue=4, wait=30.0, share=1)
    attempts = Attempts(gate)
    # With nobody waiting, free slots are never held back: the flood hashes in both.
    for n in (0, 1):
        attempts.start(f"flood{n}", "203.0.113.1")
        until(lambda: doors.entered.qsize() == n + 1)  # noqa: B023 (used at once)
    attempts.start("flood2", "203.0.113.1")
    until(lambda: gate.waiting == 1)
    # Its share of the queue is full: more are refused at once, though the queue has room.
    for n in (3, 4, 5):
        attempts.start(f"flood{n}", "203.0.113.1")
        assert attempts.refused_at_once(f"flood{n}")
    # Another address, with nothing else in the gate, hashes at once in the spare slot.
    attempts.start("other0", "198.51.100.7")
    until(lambda: doors.entered.qsize() == 3)
    # A third address finds every slot taken and waits; it is next, before the flood's
    # hash that waited longer.
    attempts.start("other1", "192.0.2.44")
    until(lambda: gate.waiting == 2)
    doors.open("flood0")
    entered = [doors.entered.get(timeout=10) for _ in range(4)]
    assert entered[2:] == ["other0", "other1"], entered
    doors.open("other0", "other1", "flood1", "flood2")
    attempts.join()
    assert attempts.outcomes == {
        "flood0": "hashed",
        "flood1": "hashed",
        "flood2": "hashed",
        "flood3": "refused",
        "flood4": "refused",
        "flood5": "refused",
        "other0": "hashed",
        "other1": "hashed",
    }


def test_one_account_from_many_addresses_keeps_its_share(doors: Doors) -> None:
    """A stolen access token used from many addresses: its wrong current passwords are held by
    the account, whatever the address."""
    gate = HashGate(doors, slots=2, queue=4, wait=30.0, share=1)
    attempts = Attempts(gate)
    victim, other = uuid4(), uuid4()
    for n in (0, 1):
        attempts.start(f"flood{n}", f"203.0.113.{n}", victim)
        until(lambda: doors.entered.qsize() == n + 1)  # noqa: B023 (used at once)
    attempts.start("flood2", "203.0.113.2", victim)
    until(lambda: gate.waiting == 1)
    attempts.start("flood3", "203.0.113.3", victim)
    assert attempts.refused_at_once("flood3")
    # Neither a fresh address nor the spare slot lets the account past its share.
    assert doors.entered.qsize() == 2
    attempts.start("other0", "198.51.100.7", other)
    until(lambda: doors.entered.qsize() == 3)
    doors.open("flood0", "flood1", "flood2", "other0")
    attempts.join()
    assert attempts.outcomes["other0"] == "hashed"
    assert attempts.outcomes["flood3"] == "refused"


def test_the_spare_slot_is_only_for_a_holder_with_nothing_else_in_the_gate(
    doors: Doors,
) -> None:
    gate = HashGate(doors, slots=1, queue=4, wait=30.0, share=2)
    attempts = Attempts(gate)
    attempts.start("flood0", "203.0.113.1")
    until(lambda: doors.entered.qsize() == 1)
    attempts.start("flood1", "203.0.113.1")  # its address hashes already: it waits
    until(lambda: gate.waiting == 1)
    assert doors.entered.qsize() == 1
    attempts.start("other0", "198.51.100.7")  # nothing else in the gate: the spare slot
    until(lambda: doors.entered.qsize() == 2)
    doors.open("flood0", "flood1", "other0")
    attempts.join()
    assert set(attempts.outcomes.values()) == {"hashed"}


def test_a_request_without_a_client_is_held_by_no_one(doors: Doors) -> None:
    """Work outside a request (the CLI, a worker) has no share to exceed."""
    gate = HashGate(doors, slots=1, queue=4, wait=30.0, share=1)
    threads = [threading.Thread(target=gate.verify, args=(HASH, f"other{n}")) for n in range(3)]
    for thread in threads:
        thread.start()
    until(lambda: gate.waiting == 2)
    doors.open("other0", "other1", "other2")
    for thread in threads:
        thread.join(timeout=30)
    assert gate.waiting == 0
