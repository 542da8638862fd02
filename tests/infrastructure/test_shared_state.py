"""The denylist and the rate limiter, each implementation held to the same contract."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import redis
from psycopg_pool import ConnectionPool

from application.factors.throttle import Limit
from application.ports import AccessClaims, Standing, Unavailable
from infrastructure.rate_limit import LocalRateLimiter, RedisRateLimiter
from infrastructure.revocation import (
    EXPIRY_GRACE,
    PostgresRevocationList,
    RedisRevocationList,
    SqliteRevocationList,
)
from tests.servers import PostgresCluster, start_redis

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(minutes=15)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def denylist(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        made: Any = SqliteRevocationList(tmp_path / "revoked.sqlite")
    elif request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        made = PostgresRevocationList(ConnectionPool(cluster.new_database(), open=True))
    else:
        url = request.getfixturevalue("redis_url")
        made = RedisRevocationList(redis.Redis.from_url(url), url)
    yield made
    made.close()


def claims(account: Any = None, session: Any = None, issued: datetime = T0) -> AccessClaims:
    return AccessClaims(account or uuid4(), session or uuid4(), (), issued.timestamp())


def standing(shared: Any, of: AccessClaims) -> Standing:
    return asyncio.run(shared.standing(of))


def revoked(shared: Any, of: AccessClaims) -> bool:
    return standing(shared, of).revoked


def test_a_revoked_session_is_refused_and_others_are_not(denylist: Any) -> None:
    mine, other = claims(), claims()
    denylist.revoke_session(mine.session_id, TTL)
    assert revoked(denylist, mine)
    assert not revoked(denylist, other)


def test_a_sessions_end_lasts_as_long_as_its_longest_entry(denylist: Any) -> None:
    """A code's second use keeps its session's end for as long as the session could live; an
    end written later with the access tokens' shorter life must not cut that short."""
    lasting, brief = uuid4(), uuid4()
    assert not standing(denylist, claims(session=lasting)).ended
    denylist.revoke_session(lasting, timedelta(days=90))
    denylist.revoke_session(lasting, timedelta(milliseconds=1))
    denylist.revoke_session(brief, timedelta(milliseconds=1))
    if isinstance(denylist, RedisRevocationList):
        # Redis forgets by its own clock: the remaining lives of the two keys tell.
        life = {
            name: denylist._client.pttl(next(denylist._client.scan_iter(f"*session:{name}")))
            for name in (lasting, brief)
        }
        assert life[lasting] > timedelta(days=89) // timedelta(milliseconds=1)
        assert 0 < life[brief] <= (EXPIRY_GRACE + timedelta(seconds=1)) // timedelta(milliseconds=1)
    else:
        denylist.forget_expired(datetime.now(UTC) + EXPIRY_GRACE + timedelta(seconds=1), 1000)
        assert not standing(denylist, claims(session=brief)).ended
    assert standing(denylist, claims(session=lasting)).ended
    assert revoked(denylist, claims(session=lasting))
    assert denylist.standing_now(claims(session=lasting)).ended


def test_an_account_cutoff_refuses_tokens_issued_up_to_it_but_the_kept_session(
    denylist: Any,
) -> None:
    account, kept = uuid4(), uuid4()
    denylist.revoke_sessions_before(account, cutoff=T0, ttl=TTL, keep=kept)
    assert revoked(denylist, claims(account, issued=T0 - timedelta(seconds=1)))
    assert revoked(denylist, claims(account, issued=T0))
    assert not revoked(denylist, claims(account, issued=T0 + timedelta(microseconds=10)))
    assert not revoked(denylist, claims(account, kept, issued=T0 - timedelta(seconds=1)))
    denylist.revoke_sessions_before(account, cutoff=T0 + timedelta(seconds=5), ttl=TTL)
    assert revoked(denylist, claims(account, kept, issued=T0))


def test_redis_revocation_fails_closed_when_redis_is_down() -> None:
    server = start_redis()
    denylist = RedisRevocationList(redis.Redis.from_url(server.url, socket_timeout=0.5), server.url)
    denylist.revoke_session(uuid4(), TTL)
    server.stop()
    with pytest.raises(Unavailable):
        revoked(denylist, claims())
    with pytest.raises(Unavailable):
        denylist.revoke_session(uuid4(), TTL)
    with pytest.raises(Unavailable):
        denylist.changing([uuid4()])  # a save no other process could hear of is not made


def test_a_save_marks_the_account_changing_then_changed_with_its_version(denylist: Any) -> None:
    mine = claims()
    assert standing(denylist, mine) == Standing(revoked=False, mark=None, written=0)
    token = denylist.changing([mine.account_id])
    assert standing(denylist, mine).mark == token
    assert token.startswith("changing:")
    denylist.changed(token, {mine.account_id: 7}, {mine.account_id: 120})
    assert standing(denylist, mine) == Standing(revoked=False, mark="7", written=120)


def test_a_late_changed_never_overwrites_another_save_in_flight_nor_a_newer_version(
    denylist: Any,
) -> None:
    """The first save's "changed" arrives after a second save marked the account changing: if
    it overwrote that mark and the second save's process died after committing, every process
    would trust copies older than the second save for as long as the mark lived."""
    mine = claims()
    first = denylist.changing([mine.account_id])
    second = denylist.changing([mine.account_id])
    denylist.changed(first, {mine.account_id: 7}, {mine.account_id: 120})
    assert standing(denylist, mine).mark == second
    denylist.changed(second, {mine.account_id: 8}, {mine.account_id: 125})
    assert standing(denylist, mine).mark == "8"
    denylist.changed("changing:stale", {mine.account_id: 6}, {mine.account_id: 110})
    assert standing(denylist, mine) == Standing(revoked=False, mark="8", written=125)


def test_settling_an_unmarked_account_never_overwrites_a_mark(denylist: Any) -> None:
    mine = claims()
    denylist.settle(mine.account_id, 3)
    assert standing(denylist, mine).mark == "3"
    token = denylist.changing([mine.account_id])
    denylist.settle(mine.account_id, 3)
    assert standing(denylist, mine).mark == token


@pytest.fixture(params=["local", "redis"])
def limiter(request: pytest.FixtureRequest) -> Any:
    if request.param == "local":
        return LocalRateLimiter()
    url = request.getfixturevalue("redis_url")
    return RedisRateLimiter(redis.Redis.from_url(url), url)


def test_a_burst_up_to_the_limit_then_a_wait_of_one_interval(limiter: Any) -> None:
    limit = Limit(count=5, per=timedelta(seconds=60))
    assert [limiter.acquire("k", limit, T0) for _ in range(5)] == [0.0] * 5
    wait = limiter.acquire("k", limit, T0)
    assert wait == pytest.approx(12.0, abs=0.01)
    assert limiter.acquire("other", limit, T0) == 0.0
    assert limiter.acquire("k", limit, T0 + timedelta(seconds=12)) == 0.0
    assert limiter.acquire("k", limit, T0 + timedelta(seconds=12)) > 0


def test_redis_limits_are_shared_between_processes(redis_url: str) -> None:
    limit = Limit(count=3, per=timedelta(seconds=60))
    first = RedisRateLimiter(redis.Redis.from_url(redis_url), redis_url)
    second = RedisRateLimiter(redis.Redis.from_url(redis_url), redis_url)
    assert [first.acquire("shared", limit, T0), second.acquire("shared", limit, T0)] == [0.0, 0.0]
    assert first.acquire("shared", limit, T0) == 0.0
    assert second.acquire("shared", limit, T0) > 0


def test_redis_limits_fall_back_to_local_limits_when_redis_is_down() -> None:
    server = start_redis()
    limiter = RedisRateLimiter(redis.Redis.from_url(server.url, socket_timeout=0.5), server.url)
    server.stop()
    limit = Limit(count=2, per=timedelta(seconds=60))
    assert [limiter.acquire("k", limit, T0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("k", limit, T0) > 0
    # On the event loop too, and into the same local allowance.
    assert asyncio.run(limiter.acquire_async("k", limit, T0)) > 0
    asyncio.run(limiter.release_async("k", limit, T0))
    assert limiter.acquire("k", limit, T0) == 0.0


def test_the_event_loops_calls_take_and_give_back_the_same_allowance(limiter: Any) -> None:
    """The provider's throttle takes on the event loop what others take from threads."""
    limit = Limit(count=3, per=timedelta(seconds=60))

    async def on_the_loop() -> list[float]:
        taken = [await limiter.acquire_async("k", limit, T0) for _ in range(2)]
        await limiter.release_async("k", limit, T0)  # one given back
        return taken

    assert asyncio.run(on_the_loop()) == [0.0, 0.0]
    assert [limiter.acquire("k", limit, T0) for _ in range(2)] == [0.0, 0.0]
    assert asyncio.run(limiter.acquire_async("k", limit, T0)) > 0


def test_an_app_cutoff_refuses_that_apps_tokens_of_that_account_up_to_it(denylist: Any) -> None:
    account = uuid4()

    def app(client_id: str | None, issued: datetime, of: Any = account) -> AccessClaims:
        return AccessClaims(of, uuid4(), (), issued.timestamp(), client_id=client_id)

    denylist.revoke_app_sessions_before(account, "wiki", T0, TTL)
    assert revoked(denylist, app("wiki", T0 - timedelta(seconds=1)))
    assert revoked(denylist, app("wiki", T0))
    assert not revoked(denylist, app("wiki", T0 + timedelta(microseconds=10)))
    assert not revoked(denylist, app("blog", T0 - timedelta(seconds=1)))  # another app
    assert not revoked(denylist, app(None, T0 - timedelta(seconds=1)))  # tessera's own
    assert not revoked(denylist, app("wiki", T0 - timedelta(seconds=1), uuid4()))
    # A cutoff only moves later: an earlier one written late undoes nothing.
    denylist.revoke_app_sessions_before(account, "wiki", T0 + timedelta(seconds=5), TTL)
    denylist.revoke_app_sessions_before(account, "wiki", T0, TTL)
    assert revoked(denylist, app("wiki", T0 + timedelta(seconds=4)))
