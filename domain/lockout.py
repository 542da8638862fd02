"""When consecutive failed logins lock an account, and for how long (OWASP ASVS 5.0, V6.3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 5  # consecutive failures that lock the account
    base: timedelta = timedelta(minutes=15)  # the first lock's length
    ceiling: timedelta = timedelta(hours=24)  # no lock lasts longer

    def lock_until(self, failures: int, previous_locks: int, at: datetime) -> datetime | None:
        """None while under the threshold; otherwise a lock that doubles with each repeat."""
        if failures < self.threshold:
            return None
        doublings: int = min(previous_locks, 16)
        length: timedelta = min(self.base * 2**doublings, self.ceiling)
        return at + length
