"""The one-time value stores' contract, on SQLite, PostgreSQL and Redis: a value (here a
passkey challenge's ceremony) is taken once (even by racing takers), only before its time."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg_pool import ConnectionPool
from webauthn.helpers import bytes_to_base64url

from infrastructure.one_time_values import (
    PostgresOneTimeValues,
    RedisOneTimeValues,
    SqliteOneTimeValues,
)
from tests.servers import PostgresCluster

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def challenges(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        made: Any = SqliteOneTimeValues(tmp_path / "challenges.sqlite")
    elif request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        made = PostgresOneTimeValues(ConnectionPool(cluster.new_database(), open=True))
    else:
        made = RedisOneTimeValues(redis.Redis.from_url(request.getfixturevalue("redis_url")))
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


@pytest.mark.parametrize("store", ["sqlite", "postgres", "redis"])
def test_a_value_stored_under_the_names_of_before_the_rename_is_still_found(
    request: pytest.FixtureRequest, tmp_path: Path, store: str
) -> None:
    """The stores were PasskeyChallenges once; their table, file and key names stayed, so a
    value put by a process of before an upgrade is taken by one of after it."""
    key = os.urandom(32)
    stored_key = bytes_to_base64url(key)
    expires_at = (T0 + timedelta(minutes=5)).timestamp()
    made: Any
    if store == "sqlite":
        path = tmp_path / "passkey_challenges.sqlite"
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute(
                "CREATE TABLE passkey_challenges (challenge TEXT PRIMARY KEY,"
                " ceremony TEXT NOT NULL, expires_at REAL NOT NULL)"
            )
            db.execute(
                "INSERT INTO passkey_challenges VALUES (?, ?, ?)", (stored_key, "v", expires_at)
            )
        made = SqliteOneTimeValues(path)
    elif store == "postgres":
        url = request.getfixturevalue("postgres").new_database()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE tessera_passkey_challenges (challenge text PRIMARY KEY,"
                " ceremony text NOT NULL, expires_at double precision NOT NULL)"
            )
            conn.execute(
                "INSERT INTO tessera_passkey_challenges VALUES (%s, %s, %s)",
                (stored_key, "v", expires_at),
            )
        made = PostgresOneTimeValues(ConnectionPool(url, open=True))
    else:
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        client.set(f"tessera:passkey-challenge:{stored_key}", f"{expires_at} v", ex=60)
        made = RedisOneTimeValues(client)
    try:
        assert made.take(key, T0) == "v"
        assert made.take(key, T0) is None
    finally:
        made.close()


def test_a_claim_then_take_takes_the_value_first_then_the_claim(challenges: Any) -> None:
    """What a code's uses do: the first claims it and takes the code; the second finds the claim
    and takes it (naming the first use); a third finds neither."""
    claim, key = os.urandom(32), os.urandom(32)
    later = T0 + timedelta(minutes=5)
    challenges.put(key, "code", T0 + timedelta(minutes=1))
    assert challenges.claim_then_take(claim, "spent 1", later, key, T0) == (True, "code")
    assert challenges.claim_then_take(claim, "spent 2", later, key, T0) == (False, "spent 1")
    assert challenges.claim_then_take(claim, "spent 3", later, key, T0) == (True, None)
    expired = os.urandom(32)
    challenges.put(expired, "code", T0 + timedelta(minutes=1))
    gone = T0 + timedelta(minutes=1)
    assert challenges.claim_then_take(os.urandom(32), "x", later, expired, gone) == (True, None)


def test_racing_claims_of_one_key_leave_one_winner_and_its_value(challenges: Any) -> None:
    """Racing uses of one code: exactly one takes the code, and the next finds its claim."""
    claim, key = os.urandom(32), os.urandom(32)
    challenges.put(key, "code", T0 + timedelta(minutes=1))
    outcomes: list[tuple[int, tuple[bool, str | None]]] = []
    start = threading.Barrier(8)

    def use(n: int) -> None:
        start.wait()
        later = T0 + timedelta(minutes=5)
        outcomes.append((n, challenges.claim_then_take(claim, f"spent {n}", later, key, T0)))

    threads = [threading.Thread(target=use, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, outcome in outcomes if outcome == (True, "code")]
    assert len(winners) == 1, outcomes
    assert (False, f"spent {winners[0]}") in [outcome for _, outcome in outcomes], outcomes


def test_each_put_finds_the_expired_values_by_an_index(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    """Every put deletes the values expired a day ago; every authorization code is one, so
    without an index each put would read the whole table."""
    SqliteOneTimeValues(tmp_path / "values.sqlite").close()
    with sqlite3.connect(tmp_path / "values.sqlite") as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN DELETE FROM passkey_challenges WHERE expires_at < 1"
        ).fetchall()
    assert "USING INDEX passkey_challenges_expires_at" in str(plan), plan
    url = postgres.new_database()
    PostgresOneTimeValues(ConnectionPool(url, open=True)).close()
    with psycopg.connect(url) as conn:
        conn.execute("SET enable_seqscan = off")  # an empty table: only an index can show
        plan = conn.execute(
            "EXPLAIN DELETE FROM tessera_passkey_challenges WHERE expires_at < 1"
        ).fetchall()
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid ="
            " 'tessera_passkey_challenges_expires_at'::regclass"
        ).fetchone()
    assert "tessera_passkey_challenges_expires_at" in str(plan), plan
    assert valid == (True,)
