"""Rate limits on the endpoints an attacker would hammer, per client IP and per identifier."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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

    def release(self, key: str, limit: Limit, now: datetime) -> None:
        """Gives back one request acquire took (never more than a full allowance)."""
        ...

    async def acquire_async(self, key: str, limit: Limit, now: datetime) -> float:
        """acquire(), for a caller on the event loop."""
        ...

    async def release_async(self, key: str, limit: Limit, now: datetime) -> None:
        """release(), for a caller on the event loop."""
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

    @asynccontextmanager
    async def failures_only(self, action: str, ip: str) -> AsyncIterator[Attempt]:
        """An attempt that counts against the client's allowance only if it fails: one request
        is taken before it (RateLimited when none is left), and given back unless the attempt
        was marked failed. Taking before deciding is what makes parallel failures wait their
        turn: a check before and a count after let a burst of them all pass the check. On the
        event loop: the attempt itself may run there too when it needs no database."""
        limits = self._limits.get(action)
        attempt = Attempt()
        if limits is None:
            yield attempt
            return
        key = f"{action}:ip:{ip}"
        wait = await self._limiter.acquire_async(key, limits.per_ip, self._clock.now())
        if wait > 0:
            raise RateLimited(wait)
        try:
            yield attempt
        finally:
            if not attempt.failed:
                await self._limiter.release_async(key, limits.per_ip, self._clock.now())


class Attempt:
    """What failures_only yields: mark it failed to keep the request it took."""

    def __init__(self) -> None:
        self.failed = False
