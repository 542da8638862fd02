"""GCRA rate limiting (the generic cell rate algorithm): one timestamp per key, exact bursts.

Each key stores its theoretical arrival time (TAT). A request is allowed if, after adding one
emission interval, the TAT is no further than the whole period ahead of now.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import redis

from application.factors.throttle import Limit
from infrastructure.revocation import AsyncRedis

log = logging.getLogger(__name__)


class LocalRateLimiter:
    """In-process limits: the embedded default, and the fallback when Redis is away."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def acquire(self, key: str, limit: Limit, now: datetime) -> float:
        t = now.timestamp()
        with self._lock:
            if len(self._tats) >= self._max_keys:
                # Forget keys whose allowance is full again; they would allow a burst anyway.
                self._tats = {k: v for k, v in self._tats.items() if v > t}
            tat = max(self._tats.get(key, t), t)
            allow_at = tat + limit.interval - limit.per.total_seconds()
            if t < allow_at:
                return allow_at - t
            self._tats[key] = tat + limit.interval
            return 0.0

    async def acquire_async(self, key: str, limit: Limit, now: datetime) -> float:
        return self.acquire(key, limit, now)  # in memory: nothing to wait for

    async def release_async(self, key: str, limit: Limit, now: datetime) -> None:
        self.release(key, limit, now)

    def release(self, key: str, limit: Limit, now: datetime) -> None:
        t = now.timestamp()
        with self._lock:
            tat = self._tats.get(key)
            if tat is None:
                return
            if tat - limit.interval <= t:
                del self._tats[key]  # the allowance is full again
            else:
                self._tats[key] = tat - limit.interval


# Atomic in Redis: read, decide and write the TAT in one script, shared by every API process.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local allow_at = tat + interval - period
if now < allow_at then return tostring(allow_at - now) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1)
return '0'
"""
# Gives one request back: the TAT moves back one interval, and a full allowance is no key.
_RELEASE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return end
local new_tat = tat - interval
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1)
end
"""


class RedisRateLimiter:
    """Limits shared by all API processes. If Redis does not answer, each process falls back to
    its own local limits: still limited, per process, rather than closed to every login."""

    def __init__(self, client: redis.Redis, url: str, prefix: str = "tessera:rate:") -> None:
        self._client = client
        self._script = client.register_script(_GCRA)
        self._release = client.register_script(_RELEASE)
        self._async = AsyncRedis(url)
        self._prefix = prefix
        self._fallback = LocalRateLimiter()

    def _acquiring(self, limit: Limit, now: datetime) -> list[float]:
        """The GCRA script's arguments, the same from a thread or the event loop."""
        return [now.timestamp(), limit.interval, limit.per.total_seconds()]

    def _releasing(self, limit: Limit, now: datetime) -> list[float]:
        return [now.timestamp(), limit.interval]

    def acquire(self, key: str, limit: Limit, now: datetime) -> float:
        try:
            answer = self._script(keys=[self._prefix + key], args=self._acquiring(limit, now))
        except redis.RedisError:
            log.warning("redis unavailable for rate limiting; using local limits")
            return self._fallback.acquire(key, limit, now)
        return float(answer)

    def release(self, key: str, limit: Limit, now: datetime) -> None:
        try:
            self._release(keys=[self._prefix + key], args=self._releasing(limit, now))
        except redis.RedisError:
            log.warning("redis unavailable for rate limiting; using local limits")
            self._fallback.release(key, limit, now)

    async def acquire_async(self, key: str, limit: Limit, now: datetime) -> float:
        # A script object is bound to its client, and the async client to its loop: made per
        # call (it only digests the script; Redis keeps the script itself).
        script = self._async.client().register_script(_GCRA)
        try:
            answer = await script(keys=[self._prefix + key], args=self._acquiring(limit, now))
        except redis.RedisError:
            log.warning("redis unavailable for rate limiting; using local limits")
            return self._fallback.acquire(key, limit, now)
        return float(answer)

    async def release_async(self, key: str, limit: Limit, now: datetime) -> None:
        script = self._async.client().register_script(_RELEASE)
        try:
            await script(keys=[self._prefix + key], args=self._releasing(limit, now))
        except redis.RedisError:
            log.warning("redis unavailable for rate limiting; using local limits")
            self._fallback.release(key, limit, now)
