"""The service's own keys in versions, so that a key known to an attacker (SECRET_KEY and a copy
of the store leaked together) can be replaced without downtime.

Version 1 of each key is the row the key table always held (infrastructure/data_keys.py). A
rotation adds version n+1 beside it, with the time it takes over: from then on it makes every
new token, tag and sealed value, while older versions only check and open what they made, until
`tessera admin rekey` destroys them (their rows forgotten, as a person's key is). A value names
the version that made it, so checking it takes one try.

Every process reads the versions again at most CACHE after the last read, and at once
when a value names a version it has not seen. A version takes over TAKE_OVER_AFTER after it is
made, by which time every running process knows it, and they all switch at the same moment: a
refresh token presented twice within the reuse interval is turned into the same successor by
whichever process answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

CACHE = timedelta(seconds=30)
TAKE_OVER_AFTER = 2 * CACHE
_UNKNOWN_VERSION_READS = timedelta(seconds=1)  # at most one read a second for unknown versions


@dataclass(frozen=True)
class KeyVersion:
    number: int
    key: bytes
    takes_over: datetime  # version 1: the beginning of time


BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


class ServiceKey:
    """application.ports.VersionedKey over the key table: the versions of one service key."""

    def __init__(
        self,
        name: str,
        read: Callable[[], Sequence[KeyVersion]],
        now: Callable[[], datetime],
    ) -> None:
        self.name = name
        self._read = read
        self._now = now
        self._lock = threading.Lock()
        self._versions: tuple[KeyVersion, ...] = tuple(read())
        self._read_at = now()
        if not self._versions:
            raise LookupError(f"no version of the {name} key")

    def current(self) -> tuple[int, bytes]:
        """The version that makes new values: the newest that has taken over."""
        now = self._now()
        versions = self._fresh()
        chosen = versions[0]
        for version in versions:
            if version.takes_over <= now:
                chosen = version
        return chosen.number, chosen.key

    def versions(self) -> tuple[KeyVersion, ...]:
        """Every live version, oldest first."""
        return self._fresh()

    def version(self, number: int) -> bytes | None:
        """The key of that version, or None when it never was or has been destroyed."""
        for version in self._fresh():
            if version.number == number:
                return version.key
        with self._lock:
            if self._versions and number < self._versions[-1].number:
                return None  # older than the newest known: destroyed, or never made
            if abs(self._now() - self._read_at) < _UNKNOWN_VERSION_READS:
                return None
        for version in self._reread():
            if version.number == number:
                return version.key
        return None

    def _fresh(self) -> tuple[KeyVersion, ...]:
        with self._lock:
            if abs(self._now() - self._read_at) < CACHE:
                return self._versions
        return self._reread()

    def _reread(self) -> tuple[KeyVersion, ...]:
        versions = tuple(self._read())
        with self._lock:
            self._read_at = self._now()
            if versions:  # every version destroyed is no state to serve from: keep the last
                self._versions = versions
            return self._versions
