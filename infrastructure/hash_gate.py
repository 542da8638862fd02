"""Admission control for password hashing: a fixed number at once, a bounded queue, no more,
and a fair share of it for each client and account.

argon2 is deliberately expensive, so a flood of logins can occupy every core. Hashing beyond
`slots` waits in a queue of at most `queue`, for at most `wait` seconds; past either bound the
request is refused at once (503 overloaded, Retry-After), which keeps login throughput at the
hash bound and every other endpoint fast instead of letting all requests time out together.
argon2-cffi releases the GIL while hashing, so the slots run on all cores in parallel.

Fairness: each hash is held by who it is for, the client's address (set by the edge for each
request) and, behind an access token, the signed-in account. One holder may keep at most
`share` places waiting in the queue (more are refused at once), so its wrong passwords never
fill the queue that everyone's logins wait in; and a freed slot goes to the waiting hash whose
holders hash least at that moment (then the first come), so another's login is next at most
one hash after it arrived, however many the flooder keeps busy. Slots are never left idle for
fairness: with no one waiting, any hash takes a free one. A login that names no account is not
held by the account it names: an unknown name's decoy hash would then be held differently from
a known one's, and a flood of one would tell the other apart.

The hashing itself runs on threads of lower CPU priority (a higher nice value; Linux keeps one
per thread, and argon2's own lane threads inherit it): logins still hash at full speed on an
otherwise idle machine, but under a flood the scheduler serves everything else first (other
requests, the projector, the database), rather than sharing the cores evenly with argon2.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from application.origin import current_caller, current_client
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


def holders() -> tuple[str, ...]:
    """Who the hash being asked for is for: the request's client address, and the account
    whose access token the request carries (its wrong current passwords, from any address)."""
    found = []
    client = current_client.get()
    if client is not None and client.ip:
        found.append(f"ip:{client.ip}")
    caller = current_caller.get()
    if caller is not None and caller.account_id is not None:
        found.append(f"account:{caller.account_id}")
    return tuple(found)


@dataclass(frozen=True, eq=False)
class _Turn:
    holders: tuple[str, ...]
    arrival: int


def _add(counts: Counter[str], keys: Iterable[str], by: int) -> None:
    for key in keys:
        counts[key] += by
        if counts[key] <= 0:
            del counts[key]  # a holder that holds nothing is forgotten: no growth per address


class HashGate:
    def __init__(
        self, hasher: PasswordHasher, slots: int, queue: int, wait: float, share: int
    ) -> None:
        self._hasher = hasher
        # As many threads as slots: a task admitted through a slot never waits for a thread.
        self._threads = ThreadPoolExecutor(
            max_workers=slots, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._free = slots
        self._queue = queue
        self._wait = wait
        self._share = share
        self._waiting: list[_Turn] = []
        self._hashing: Counter[str] = Counter()  # slots held, per holder
        self._queued: Counter[str] = Counter()  # places waiting, per holder
        self._arrivals = itertools.count()
        self._changed = threading.Condition()

    @property
    def waiting(self) -> int:
        """Hashes waiting for a slot now."""
        with self._changed:
            return len(self._waiting)

    def _next(self) -> _Turn:
        """The waiting hash whose holders hash least now; of those, the first come."""
        return min(
            self._waiting, key=lambda t: (sum(self._hashing[h] for h in t.holders), t.arrival)
        )

    def _enter(self, who: tuple[str, ...]) -> None:
        with self._changed:
            if self._free and not self._waiting:
                self._take(who)
                return
            if len(self._waiting) >= self._queue or any(
                self._queued[h] >= self._share for h in who
            ):
                raise Overloaded
            turn = _Turn(who, next(self._arrivals))
            self._waiting.append(turn)
            _add(self._queued, who, 1)
            deadline = time.monotonic() + self._wait
            try:
                while not (self._free and self._next() is turn):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Overloaded
                    self._changed.wait(left)
                self._take(who)
            finally:
                self._waiting.remove(turn)
                _add(self._queued, who, -1)
                self._changed.notify_all()  # the next in line may be another now

    def _take(self, who: tuple[str, ...]) -> None:
        self._free -= 1
        _add(self._hashing, who, 1)

    def _leave(self, who: tuple[str, ...]) -> None:
        with self._changed:
            self._free += 1
            _add(self._hashing, who, -1)
            self._changed.notify_all()

    def _run(self, work: Callable[[], T]) -> T:
        who = holders()
        self._enter(who)
        try:
            return self._threads.submit(work).result()
        finally:
            self._leave(who)

    def hash(self, password: str) -> str:
        return self._run(lambda: self._hasher.hash(password))

    def verify(self, password_hash: str, password: str) -> bool:
        return self._run(lambda: self._hasher.verify(password_hash, password))

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.needs_rehash(password_hash)
