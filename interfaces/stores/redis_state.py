"""The shared state in Redis: every API process sees a revocation, a refresh or a rate limit's
count at once, whichever database holds the events."""

from __future__ import annotations

import redis

from infrastructure.one_time_values import RedisOneTimeValues
from infrastructure.rate_limit import RedisRateLimiter
from infrastructure.refresh_chains import RedisRefreshChains
from infrastructure.revocation import RedisRevocationList
from interfaces.stores.roles import SharedState


def redis_state(url: str) -> SharedState:
    # Short timeouts: a Redis outage must answer 503 fast, not hang the request.
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    return SharedState(
        revocations=RedisRevocationList(client, url),
        chains=RedisRefreshChains(client, url),
        one_time_values=RedisOneTimeValues(client),
        limiter=RedisRateLimiter(client, url),
        redis=client,
    )
