"""Each session's refresh-token chain, every store held to the same contract: one turn per
token, a spent token ends the chain, expiry on the service's clock, the account's mark read in
the same step, and racing turns of one token won once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis
from psycopg_pool import ConnectionPool

from application.ports import Chain, Turn, Unavailable
from infrastructure.refresh_chains import (
    PostgresRefreshChains,
    RedisRefreshChains,
    SqliteRefreshChains,
)
from infrastructure.revocation import (
    PostgresRevocationList,
    RedisRevocationList,
    SqliteRevocationList,
)
from tests.servers import PostgresCluster, start_redis

# The service's clock, far from the machine's: expiry must follow the former.
T0 = datetime(2031, 5, 1, 12, tzinfo=UTC)
IDLE = timedelta(days=14)
EVERY = timedelta(hours=1)


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """The chains and the revocation list (which writes the marks) on one store."""
    if request.param == "sqlite":
        marks: Any = SqliteRevocationList(tmp_path / "revocations.sqlite")
        chains: Any = SqliteRefreshChains(tmp_path / "revocations.sqlite")
    elif request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        pool = ConnectionPool(cluster.new_database(), open=True)
        marks = PostgresRevocationList(pool)
        chains = PostgresRefreshChains(pool)
    else:
        url = request.getfixturevalue("redis_url")
        client = redis.Redis.from_url(url)
        client.flushdb()
        marks = RedisRevocationList(client, url)
        chains = RedisRefreshChains(client, url)
    yield chains, marks
    chains.close()
    marks.close()


def begun(chains: Any, account: UUID | None = None, ends: timedelta = timedelta(days=90)) -> UUID:
    session = uuid4()
    chain = Chain(
        account_id=account or uuid4(),
        started_at=T0,
        password_generation=2,
        turn=0,
        expires_at=T0 + IDLE,
        ends_at=T0 + ends,
        recorded_at=T0,
    )
    chains.begin(session, chain, "d0")
    return session


def turn(
    chains: Any,
    session: UUID,
    n: int,
    at: datetime = T0,
    digest: str | None = None,
    grace: timedelta = timedelta(0),
) -> Turn:
    step = chains.turn(session, n, digest or f"d{n}", f"d{n + 1}", at, IDLE, EVERY, grace)
    result: Turn = asyncio.run(step)
    return result


def test_a_token_turns_once_and_the_next_one_turns_after_it(stores: tuple[Any, Any]) -> None:
    chains, _ = stores
    account = uuid4()
    session = begun(chains, account)
    first = turn(chains, session, 0, T0 + timedelta(minutes=1))
    assert first.turned and not first.spent and first.chain is not None
    assert first.chain.turn == 1 and first.chain.account_id == account
    assert first.chain.started_at == T0 and first.chain.password_generation == 2
    assert first.chain.expires_at == T0 + timedelta(minutes=1) + IDLE
    assert first.record, "a session's first rotation is recorded"
    second = turn(chains, session, 1, T0 + timedelta(minutes=2))
    assert second.turned and second.chain is not None and second.chain.turn == 2
    assert not second.record, "then at most one an hour"
    later = turn(chains, session, 2, T0 + timedelta(minutes=62))
    assert later.turned and later.record
    assert not turn(chains, session, 3, T0 + timedelta(minutes=63)).record


def test_a_spent_token_ends_the_chain(stores: tuple[Any, Any]) -> None:
    chains, _ = stores
    session = begun(chains)
    assert turn(chains, session, 0).turned
    assert turn(chains, session, 1).turned
    again = turn(chains, session, 0)
    assert again.spent and not again.turned and again.chain is not None
    assert turn(chains, session, 2).chain is None, "the thief's or not, the current one is over"


GRACE = timedelta(seconds=10)


def test_the_token_turned_last_comes_back_within_the_grace_to_its_successor(
    stores: tuple[Any, Any],
) -> None:
    chains, _ = stores
    session = begun(chains)
    at = T0 + timedelta(minutes=5)
    assert turn(chains, session, 0, at, grace=GRACE).turned
    again = turn(chains, session, 0, at + GRACE - timedelta(microseconds=1), grace=GRACE)
    assert again.again and not again.turned and not again.spent and not again.record
    assert again.chain is not None and again.chain.turn == 1, "the chain did not move"
    assert turn(chains, session, 1, at + timedelta(seconds=11), grace=GRACE).turned, (
        "its successor, the current token, turns as before"
    )


def test_a_token_back_after_the_grace_or_two_turns_old_ends_the_chain(
    stores: tuple[Any, Any],
) -> None:
    chains, _ = stores
    late = begun(chains)
    assert turn(chains, late, 0, T0, grace=GRACE).turned
    assert turn(chains, late, 0, T0 + GRACE, grace=GRACE).spent
    assert turn(chains, late, 1, T0 + GRACE, grace=GRACE).chain is None
    old = begun(chains)
    assert turn(chains, old, 0, T0, grace=GRACE).turned
    assert turn(chains, old, 1, T0, grace=GRACE).turned
    assert turn(chains, old, 0, T0, grace=GRACE).spent, "two turns back: no grace"
    assert turn(chains, old, 2, T0, grace=GRACE).chain is None


def test_the_grace_gives_only_the_successor_of_the_token_presented(
    stores: tuple[Any, Any],
) -> None:
    """The store keeps only the current digest: a token of the last turn whose successor is
    not the current token (not the one turned into it) is spent, not given anything."""
    chains, _ = stores
    session = begun(chains)
    assert turn(chains, session, 0, grace=GRACE).turned
    other = chains.turn(session, 0, "d0", "not d1", T0, IDLE, EVERY, GRACE)
    assert asyncio.run(other).spent


def test_with_no_grace_any_spent_token_ends_the_chain(stores: tuple[Any, Any]) -> None:
    chains, _ = stores
    session = begun(chains)
    assert turn(chains, session, 0, grace=timedelta(0)).turned
    assert turn(chains, session, 0, grace=timedelta(0)).spent


def test_a_step_whose_clock_was_read_before_the_turn_it_lost_to_gets_no_grace_when_strict(
    stores: tuple[Any, Any],
) -> None:
    """Racing refreshes read the clock before their round trip: one that read it earlier can
    arrive after the turn made at a later instant. With no interval, it is reuse all the same."""
    chains, _ = stores
    session = begun(chains)
    assert turn(chains, session, 0, T0 + timedelta(seconds=1), grace=timedelta(0)).turned
    late = turn(chains, session, 0, T0, grace=timedelta(0))
    assert late.spent and not late.again


def test_racing_turns_of_one_token_within_the_grace_all_get_its_successor(
    stores: tuple[Any, Any],
) -> None:
    chains, _ = stores
    session = begun(chains)
    results: list[Turn] = []
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        results.append(turn(chains, session, 0, grace=GRACE))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.turned for r in results) == 1
    assert sum(r.again for r in results) == 7
    assert all(r.chain is not None and r.chain.turn == 1 for r in results)


def test_a_token_that_is_not_the_current_one_turns_nothing(stores: tuple[Any, Any]) -> None:
    chains, _ = stores
    session = begun(chains)
    wrong = turn(chains, session, 0, digest="not the digest of turn 0")
    assert wrong.chain is None and not wrong.spent
    ahead = turn(chains, session, 5)
    assert ahead.chain is None and not ahead.spent
    assert turn(chains, uuid4(), 0).chain is None
    assert turn(chains, session, 0).turned, "the current token is untouched by those"


def test_a_chain_expires_when_idle_and_at_the_sessions_maximum_age(
    stores: tuple[Any, Any],
) -> None:
    chains, _ = stores
    idle = begun(chains)
    assert turn(chains, idle, 0, T0 + IDLE).chain is None
    capped = begun(chains, ends=timedelta(days=20))
    step = turn(chains, capped, 0, T0 + timedelta(days=10))
    assert step.chain is not None and step.chain.expires_at == T0 + timedelta(days=20)
    assert turn(chains, capped, 1, T0 + timedelta(days=20)).chain is None


def test_an_ended_chain_turns_no_more(stores: tuple[Any, Any]) -> None:
    chains, _ = stores
    ended, kept = begun(chains), begun(chains)
    chains.end([ended])
    assert turn(chains, ended, 0).chain is None
    assert turn(chains, kept, 0).turned


def test_a_turn_reads_the_accounts_mark(stores: tuple[Any, Any]) -> None:
    chains, marks = stores
    account = uuid4()
    session = begun(chains, account)
    token = marks.changing([account])
    marks.changed(token, {account: 7}, {})
    assert turn(chains, session, 0).mark == "7"
    assert turn(chains, begun(chains), 0).mark is None


def test_racing_turns_of_one_token_are_won_once(stores: tuple[Any, Any]) -> None:
    chains, _ = stores
    session = begun(chains)
    results: list[Turn] = []
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        results.append(turn(chains, session, 0))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert sum(r.turned for r in results) == 1
    assert all(r.turned or r.spent or r.chain is None for r in results)
    assert any(r.spent for r in results), "the losers presented a spent token"


def test_redis_chains_fail_closed_when_redis_is_down() -> None:
    server = start_redis()
    chains = RedisRefreshChains(redis.Redis.from_url(server.url, socket_timeout=0.5), server.url)
    session = begun(chains)
    server.stop()
    with pytest.raises(Unavailable):
        turn(chains, session, 0)
    with pytest.raises(Unavailable):
        begun(chains)
    with pytest.raises(Unavailable):
        chains.end([session])


@pytest.mark.parametrize("store", ["sqlite", "postgres", "redis"])
def test_a_chain_from_before_the_interval_turns_and_is_strict(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A store written by the release before the interval (no turned time): it is upgraded in
    place, its chains turn on, and a spent token of theirs finds no grace until they turn."""
    old_row = (str(uuid4()), 0, 2, 1, "d1", 10**17, 10**17, 0)
    if store == "sqlite":
        import sqlite3

        path = tmp_path / "revocations.sqlite"
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TABLE refresh_chains (session_id TEXT PRIMARY KEY, account_id TEXT NOT"
                " NULL, started_us INTEGER NOT NULL, generation INTEGER NOT NULL, turn INTEGER"
                " NOT NULL, digest TEXT NOT NULL, expires_us INTEGER NOT NULL, ends_us INTEGER"
                " NOT NULL, recorded_us INTEGER NOT NULL)"
            )
            session = uuid4()
            db.execute(
                "INSERT INTO refresh_chains VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (str(session), *old_row),
            )
        chains: Any = SqliteRefreshChains(path)
    elif store == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        pool = ConnectionPool(cluster.new_database(), open=True)
        with pool.connection() as conn:
            conn.execute(
                "CREATE TABLE tessera_refresh_chains (session_id uuid PRIMARY KEY, account_id"
                " uuid NOT NULL, started_us bigint NOT NULL, generation integer NOT NULL, turn"
                " integer NOT NULL, digest text NOT NULL, expires_us bigint NOT NULL, ends_us"
                " bigint NOT NULL, recorded_us bigint NOT NULL)"
            )
            session = uuid4()
            conn.execute(
                "INSERT INTO tessera_refresh_chains VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (session, *old_row),
            )
        PostgresRevocationList(pool)  # the marks a turn reads
        chains = PostgresRefreshChains(pool)
    else:
        url = request.getfixturevalue("redis_url")
        client = redis.Redis.from_url(url)
        chains = RedisRefreshChains(client, url)
        session = begun(chains)
        assert turn(chains, session, 0).turned
        client.hdel(f"tessera:chain:{session}", "turned")
    assert turn(chains, session, 0, grace=GRACE).spent, "no grace without a turned time"
    if store != "redis":
        upgraded = begun(chains)  # and the upgraded store keeps new chains' turns
        assert turn(chains, upgraded, 0, grace=GRACE).turned
        assert turn(chains, upgraded, 0, grace=GRACE).again
    chains.close()
    if store == "postgres":
        pool.close()


def test_an_online_app_chain_is_found_by_its_browser_session(stores: tuple[Any, Any]) -> None:
    chains, _ = stores
    browser, other = uuid4(), uuid4()

    def app_chain(of: UUID | None) -> UUID:
        session = uuid4()
        chain = Chain(uuid4(), T0, 2, 0, T0 + IDLE, T0 + timedelta(days=90), T0, of)
        chains.begin(session, chain, "d0")
        return session

    online = {app_chain(browser), app_chain(browser)}
    app_chain(other)
    app_chain(None)  # offline_access, or one of tessera's own: found by no browser session
    assert set(chains.online_of(browser)) == online
    assert chains.online_of(uuid4()) == []
    assert turn(chains, next(iter(online)), 0).turned  # the column changes nothing of a turn
