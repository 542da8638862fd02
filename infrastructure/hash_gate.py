"""Admission control for password hashing: a fixed number at once, a bounded queue, no more.

argon2 is deliberately expensive, so a flood of logins can occupy every core. Hashing beyond
`slots` waits in a queue of at most `queue`, for at most `wait` seconds; past either bound the
request is refused at once (503 overloaded, Retry-After), which keeps login throughput at the
hash bound and every other endpoint fast instead of letting all requests time out together.
argon2-cffi releases the GIL while hashing, so the slots run on all cores in parallel.

The hashing itself runs on threads of lower CPU priority (a higher nice value; Linux keeps one
per thread, and argon2's own lane threads inherit it): logins still hash at full speed on an
otherwise idle machine, but under a flood the scheduler serves everything else first (other
requests, the projector, the database), rather than sharing the cores evenly with argon2.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from application.ports import Overloaded, PasswordHasher

T = TypeVar("T")
NICENESS = 10  # added to the process's nice value for the hashing threads


def _lower_priority() -> None:
    try:
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + NICENESS))
    except (AttributeError, OSError):  # not Linux, or not permitted: hash at normal priority
        pass


class HashGate:
    def __init__(self, hasher: PasswordHasher, slots: int, queue: int, wait: float) -> None:
        self._hasher = hasher
        # As many threads as slots: a task admitted through a slot never waits for a thread.
        self._threads = ThreadPoolExecutor(
            max_workers=slots, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._slots = threading.BoundedSemaphore(slots)
        self._queue = queue
        self._wait = wait
        self._waiting = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        if self._slots.acquire(blocking=False):
            return
        with self._lock:
            if self._waiting >= self._queue:
                raise Overloaded
            self._waiting += 1
        try:
            if not self._slots.acquire(timeout=self._wait):
                raise Overloaded
        finally:
            with self._lock:
                self._waiting -= 1

    def _run(self, work: Callable[[], T]) -> T:
        self._enter()
        try:
            return self._threads.submit(work).result()
        finally:
            self._slots.release()

    def hash(self, password: str) -> str:
        return self._run(lambda: self._hasher.hash(password))

    def verify(self, password_hash: str, password: str) -> bool:
        return self._run(lambda: self._hasher.verify(password_hash, password))

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.needs_rehash(password_hash)
