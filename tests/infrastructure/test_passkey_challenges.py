"""The challenge stores' contract, on SQLite, PostgreSQL and Redis: a challenge is taken once
(even by racing takers), only before its time, and tells which ceremony it was issued for."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from psycopg_pool import ConnectionPool

from infrastructure.passkey_challenges import (
    PostgresPasskeyChallenges,
    RedisPasskeyChallenges,
    SqlitePasskeyChallenges,
)
from tests.servers import PostgresCluster

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def challenges(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        made: Any = SqlitePasskeyChallenges(tmp_path / "challenges.sqlite")
    elif request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        made = PostgresPasskeyChallenges(ConnectionPool(cluster.new_database(), open=True))
    else:
        made = RedisPasskeyChallenges(redis.Redis.from_url(request.getfixturevalue("redis_url")))
    yield made
    made.close()


def test_a_challenge_is_taken_once_with_its_ceremony(challenges: Any) -> None:
    challenge = os.urandom(64)
    challenges.put(challenge, "register:abc", T0 + timedelta(minutes=5))
    assert challenges.take(os.urandom(64), T0) is None
    assert challenges.take(challenge, T0) == "register:abc"
    assert challenges.take(challenge, T0) is None


def test_an_expired_challenge_is_not_given_and_is_gone(challenges: Any) -> None:
    challenge = os.urandom(64)
    challenges.put(challenge, "sign_in", T0 + timedelta(minutes=5))
    assert challenges.take(challenge, T0 + timedelta(minutes=5)) is None
    assert challenges.take(challenge, T0) is None


def test_racing_takers_get_one_challenge_once(challenges: Any) -> None:
    challenge = os.urandom(64)
    challenges.put(challenge, "sign_in", T0 + timedelta(minutes=5))
    won: list[str | None] = []
    start = threading.Barrier(8)

    def take() -> None:
        start.wait()
        won.append(challenges.take(challenge, T0))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won, key=str) == [None] * 7 + ["sign_in"]


def test_racing_claims_of_one_key_leave_one_winner_and_its_value(challenges: Any) -> None:
    """What a code's uses claim it with: exactly one claim wins, the others change nothing."""
    key = os.urandom(32)
    won: list[bool] = []
    start = threading.Barrier(8)

    def claim(n: int) -> None:
        start.wait()
        won.append(challenges.put_new(key, f"spent {n}", T0 + timedelta(minutes=5)))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False] * 7 + [True]
    assert challenges.take(key, T0) in {f"spent {n}" for n in range(8)}
    assert challenges.put_new(key, "spent again", T0 + timedelta(minutes=5))  # taken: free again
