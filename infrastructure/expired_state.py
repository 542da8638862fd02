"""Forgetting the shared state that decides nothing any more. Each row of the revocation list
carries an `until` after which it refuses no token and marks nothing (infrastructure/
revocation.py); Redis drops such keys by itself (each is written with its TTL), but the tables
of the embedded default and of PostgreSQL without Redis keep them until deleted here.

One process does it, whichever holds the lease (as one runs each projection), a bounded batch
of each table at a time, so that a large backlog is worked off in short writes that requests
barely wait behind. The refresh chains and the one-time values forget their expired rows as
new ones are written (infrastructure/refresh_chains.py, infrastructure/one_time_values.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from infrastructure.projector import Lease

# Rows per table and pass: a few milliseconds of writing on SQLite.
BATCH = 1000
# Between passes; a pass that found a full batch is followed by another after MORE_AFTER.
INTERVAL = timedelta(minutes=10)
MORE_AFTER = timedelta(seconds=1)


class Expiring(Protocol):
    def forget_expired(self, now: datetime, limit: int) -> int:
        """Deletes up to `limit` rows of each table whose time has passed at `now`; returns
        the most deleted from one table."""
        ...


def _system_now() -> datetime:
    return datetime.now(UTC)


class ExpiredState:
    """`now` is the clock the stores write `until` by: the system's, not the service's Clock
    (whose time a test may move anywhere)."""

    def __init__(
        self,
        stores: Sequence[Expiring],
        lease: Lease,
        now: Callable[[], datetime] = _system_now,
        batch: int = BATCH,
    ) -> None:
        self._stores = stores
        self._lease = lease
        self._now = now
        self._batch = batch

    def forget_some(self) -> bool:
        """One pass, if this process holds the lease: True when some table had a full batch
        (there may be more: pass again soon)."""
        if not self._lease.held():
            return False
        now = self._now()
        deleted = [store.forget_expired(now, self._batch) for store in self._stores]
        return max(deleted, default=0) >= self._batch

    def next_pass_after(self, more: bool) -> timedelta:
        return MORE_AFTER if more else INTERVAL

    def release(self) -> None:
        self._lease.release()
