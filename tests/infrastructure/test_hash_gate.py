"""Admission control around real argon2 hashing."""

from __future__ import annotations

import threading
import time

import pytest

from application.ports import Overloaded
from infrastructure.hash_gate import HashGate
from infrastructure.passwords import Argon2Hasher, Argon2Parameters

# Real argon2 at a high cost, and a refusal timed in milliseconds: alone.
pytestmark = pytest.mark.serial

SLOW = Argon2Parameters(time_cost=40, memory_cost=8192, parallelism=1)


def test_beyond_the_slots_and_the_queue_a_request_is_refused_at_once() -> None:
    gate = HashGate(Argon2Hasher(SLOW), slots=1, queue=1, wait=30.0, share=1)
    started = threading.Event()

    def occupy() -> None:
        started.set()
        gate.hash("the first password")

    first = threading.Thread(target=occupy)
    first.start()
    started.wait()
    time.sleep(0.05)
    second = threading.Thread(target=gate.hash, args=("waits its turn",))
    second.start()
    time.sleep(0.05)
    refused_at = time.perf_counter()
    with pytest.raises(Overloaded):
        gate.hash("one too many")
    assert time.perf_counter() - refused_at < 0.05, "the refusal must not wait"
    assert first.is_alive(), "refused while the slot was still busy, not after"
    first.join()
    second.join()
    assert gate.verify(gate.hash("works again"), "works again")


def test_a_queued_request_gives_up_after_the_wait() -> None:
    gate = HashGate(Argon2Hasher(SLOW), slots=1, queue=5, wait=0.05, share=5)
    first = threading.Thread(target=gate.hash, args=("busy",))
    first.start()
    time.sleep(0.05)
    with pytest.raises(Overloaded):
        gate.verify("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g", "x")
    first.join()


def test_hashing_runs_at_a_lower_cpu_priority_than_the_request() -> None:
    """Under a flood, the scheduler serves other requests and the projector before argon2."""
    import os

    seen: list[int] = []

    class Probe:
        def hash(self, password: str) -> str:
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return "hashed"

        def verify(self, password_hash: str, password: str) -> bool:
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return True

        def needs_rehash(self, password_hash: str) -> bool:
            return False

    gate = HashGate(Probe(), slots=2, queue=2, wait=1.0, share=2)
    assert gate.hash("pw") == "hashed"
    assert gate.verify("hashed", "pw") is True
    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen and all(nice >= min(19, here + 10) for nice in seen), (seen, here)
