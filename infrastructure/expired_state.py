"""Forgetting the shared state that decides nothing any more. Each row of the revocation list
carries an `until` after which it refuses no token and marks nothing (infrastructure/
revocation.py); Redis drops such keys by itself (each is written with its TTL), but the tables
of the embedded default and of PostgreSQL without Redis keep them until deleted here.

One process does it, whichever holds the lease (as one runs each projection), a bounded batch
of each table at a time, so that a large backlog is worked off in short writes that requests
barely wait behind. The refresh chains and the one-time values forget their expired rows as
new ones are written (infrastructure/refresh_chains.py, infrastructure/one_time_values.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from infrastructure.projector import Lease

# Rows per table and pass: a few milliseconds of writing on SQLite.
BATCH = 1000
# Between passes; a pass that found a full batch is followed by another after MORE_AFTER.
INTERVAL = timedelta(minutes=10)
MORE_AFTER = timedelta(seconds=1)


class Expiring(Protocol):
    def forget_expired(
        self, now: datetime, limit: int, tables: Collection[str] | None = None
    ) -> dict[str, int]:
        """Deletes up to `limit` rows of each table (of `tables`, when given) whose time has
        passed at `now`; returns how many it deleted from each table it passed."""
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
        # Per store, the tables the next pass reads: None for all of them. After a pass that
        # found a full batch, only the tables that had one, so that a backlog in one table
        # does not have every pass a second later read the others (some unindexed) whole.
        self._backlog: list[frozenset[str] | None] = [None] * len(stores)

    def forget_some(self) -> bool:
        """One pass, if this process holds the lease: True when some table had a full batch
        (there may be more: pass again soon, then only over the tables that had one)."""
        if not self._lease.held():
            return False
        now = self._now()
        full: list[frozenset[str]] = []
        for store, tables in zip(self._stores, self._backlog, strict=True):
            if tables is not None and not tables:  # another store's backlog is being worked off
                full.append(frozenset())
                continue
            deleted = store.forget_expired(now, self._batch, tables)
            full.append(frozenset(t for t, n in deleted.items() if n >= self._batch))
        more = any(full)
        self._backlog = list(full) if more else [None] * len(self._stores)
        return more

    def next_pass_after(self, more: bool) -> timedelta:
        return MORE_AFTER if more else INTERVAL

    def release(self) -> None:
        self._lease.release()
