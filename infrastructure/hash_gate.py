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
fairness: with no one waiting, any hash takes a free one; but the hashes of a holder that has
another in the gate run at the lowest CPU priority, so that another's hash, once in, takes the
cores first (one login at a time, as a person makes them, keeps the normal priority). And one
spare slot beyond `slots` is kept for a hash whose holders have nothing else in the gate, so
such a login does not even wait for a flood's hash to end. A login that names no account is not
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
CROWDED_NICENESS = 19  # ... for the hashes of a holder beyond its share of the slots


def _lower_priority(by: int) -> Callable[[], None]:
    def lower() -> None:
        try:
            thread = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, thread)
            os.setpriority(os.PRIO_PROCESS, thread, min(19, current + by))
        except (AttributeError, OSError):  # not Linux, or not permitted: normal priority
            pass

    return lower


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


@dataclass(frozen=True)
class _Admitted:
    threads: ThreadPoolExecutor
    spare: bool


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
        # As many threads as slots in each pool (and the spare slot's): a hash admitted never
        # waits for a thread.
        self._threads = ThreadPoolExecutor(
            max_workers=slots + 1,
            thread_name_prefix="argon2",
            initializer=_lower_priority(NICENESS),
        )
        # Where the hashes of a holder with another in the gate run: at the lowest CPU
        # priority, so that a flood's hashes, admitted while nobody else needs the slots,
        # yield the cores to another's hash the moment it has a slot (niceness is raised per
        # thread and never lowered again without privilege, hence a pool of its own).
        self._crowded = ThreadPoolExecutor(
            max_workers=slots,
            thread_name_prefix="argon2-crowded",
            initializer=_lower_priority(CROWDED_NICENESS),
        )
        self._free = slots
        # One more slot, only for a hash whose holders have nothing else in the gate: another's
        # login never waits for a flood's hash to end, however slowly that one runs.
        self._spare = 1
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

    def _alone(self, who: tuple[str, ...], waiting: bool) -> bool:
        """Whether this hash's holders have no other in the gate (hashing or waiting). The
        spare slot also wants a holder: work outside a request (the CLI) is nobody's."""
        return all(self._hashing[h] + self._queued[h] - waiting == 0 for h in who)

    def _enter(self, who: tuple[str, ...]) -> _Admitted:
        """Admits the hash (to a slot, or to the spare one); or Overloaded."""
        with self._changed:
            if self._free and not self._waiting:
                return self._take(who, waiting=False)
            if self._spare and who and self._alone(who, waiting=False):
                return self._take_spare(who)
            if len(self._waiting) >= self._queue or any(
                self._queued[h] >= self._share for h in who
            ):
                raise Overloaded
            turn = _Turn(who, next(self._arrivals))
            self._waiting.append(turn)
            _add(self._queued, who, 1)
            deadline = time.monotonic() + self._wait
            try:
                while True:
                    if self._free and self._next() is turn:
                        return self._take(who, waiting=True)
                    if self._spare and who and self._alone(who, waiting=True):
                        return self._take_spare(who)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Overloaded
                    self._changed.wait(left)
            finally:
                self._waiting.remove(turn)
                _add(self._queued, who, -1)
                self._changed.notify_all()  # the next in line may be another now

    def _take(self, who: tuple[str, ...], waiting: bool) -> _Admitted:
        threads = self._threads if self._alone(who, waiting) else self._crowded
        self._free -= 1
        _add(self._hashing, who, 1)
        return _Admitted(threads, spare=False)

    def _take_spare(self, who: tuple[str, ...]) -> _Admitted:
        self._spare -= 1
        _add(self._hashing, who, 1)
        return _Admitted(self._threads, spare=True)

    def _leave(self, who: tuple[str, ...], admitted: _Admitted) -> None:
        with self._changed:
            if admitted.spare:
                self._spare += 1
            else:
                self._free += 1
            _add(self._hashing, who, -1)
            self._changed.notify_all()

    def _run(self, work: Callable[[], T]) -> T:
        who = holders()
        admitted = self._enter(who)
        try:
            return admitted.threads.submit(work).result()
        finally:
            self._leave(who, admitted)

    def hash(self, password: str) -> str:
        return self._run(lambda: self._hasher.hash(password))

    def verify(self, password_hash: str, password: str) -> bool:
        return self._run(lambda: self._hasher.verify(password_hash, password))

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.needs_rehash(password_hash)
