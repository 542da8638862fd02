"""Admission control for password hashing: a fixed number at once, a bounded queue, no more.

argon2 is deliberately expensive, so a flood of logins can occupy every core. Hashing beyond
`slots` waits in a queue of at most `queue`, for at most `wait` seconds; past either bound the
request is refused at once (503 overloaded, Retry-After), which keeps login throughput at the
hash bound and every other endpoint fast instead of letting all requests time out together.
argon2-cffi releases the GIL while hashing, so the slots run on all cores in parallel.
"""

from __future__ import annotations

import threading

from application.ports import Overloaded, PasswordHasher


class HashGate:
    def __init__(self, hasher: PasswordHasher, slots: int, queue: int, wait: float) -> None:
        self._hasher = hasher
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

    def hash(self, password: str) -> str:
        self._enter()
        try:
            return self._hasher.hash(password)
        finally:
            self._slots.release()

    def verify(self, password_hash: str, password: str) -> bool:
        self._enter()
        try:
            return self._hasher.verify(password_hash, password)
        finally:
            self._slots.release()

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.needs_rehash(password_hash)
