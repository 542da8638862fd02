"""Rate limits on the endpoints an attacker would hammer, per client IP and per identifier."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from application.ports import Clock
from domain.errors import RateLimited


@dataclass(frozen=True)
class Limit:
    count: int  # requests allowed in a burst
    per: timedelta  # ... and refilled over this long

    @property
    def interval(self) -> float:
        return self.per.total_seconds() / self.count


class RateLimiter(Protocol):
    def acquire(self, key: str, limit: Limit, now: datetime) -> float:
        """Takes one request from the key's allowance: 0.0 if allowed, else seconds to wait."""
        ...

    def wait(self, key: str, limit: Limit, now: datetime) -> float:
        """What acquire would answer now, taking nothing: seconds to wait, 0.0 if allowed."""
        ...


@dataclass(frozen=True)
class ActionLimits:
    per_ip: Limit
    per_identifier: Limit | None = None


class Throttle:
    def __init__(
        self,
        limiter: RateLimiter,
        limits: dict[str, ActionLimits],
        clock: Clock,
        fingerprint: Callable[[str, str], str],
    ) -> None:
        self._limiter = limiter
        self._limits = limits
        self._clock = clock
        self._fingerprint = fingerprint

    def check(self, action: str, ip: str, identifier: str | None = None) -> None:
        """Raises RateLimited when either the client or the target has had its share."""
        limits = self._limits.get(action)
        if limits is None:
            return
        now = self._clock.now()
        waits = [self._limiter.acquire(f"{action}:ip:{ip}", limits.per_ip, now)]
        if identifier is not None and limits.per_identifier is not None:
            # Case-folded, so ADA and ada share one allowance; keyed by its fingerprint, so
            # the limiter's store (Redis) never holds an address or a username.
            login = self._fingerprint("login", identifier.strip().casefold())
            key = f"{action}:id:{login}"
            waits.append(self._limiter.acquire(key, limits.per_identifier, now))
        if max(waits) > 0:
            raise RateLimited(max(waits))

    def check_failures(self, action: str, ip: str, identifier: str | None = None) -> None:
        """Raises RateLimited while the client or the target has used up its allowance of
        failures (counted by failed()); takes nothing, so what succeeds is never limited."""
        self._failures(action, ip, identifier, self._limiter.wait)

    def failed(self, action: str, ip: str, identifier: str | None = None) -> None:
        """Counts one failure against the client and the target (never raises: the failure's
        own answer is given; the next attempt meets check_failures)."""
        with contextlib.suppress(RateLimited):
            self._failures(action, ip, identifier, self._limiter.acquire)

    def _failures(
        self,
        action: str,
        ip: str,
        identifier: str | None,
        take: Callable[[str, Limit, datetime], float],
    ) -> None:
        limits = self._limits.get(action)
        if limits is None:
            return
        now = self._clock.now()
        waits = [take(f"{action}:ip:{ip}", limits.per_ip, now)]
        if identifier is not None and limits.per_identifier is not None:
            waits.append(take(f"{action}:id:{identifier}", limits.per_identifier, now))
        if max(waits) > 0:
            raise RateLimited(max(waits))
