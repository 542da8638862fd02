"""Indexes built CONCURRENTLY on tables already in use: one a killed build left INVALID is
built again, a valid one is left alone."""

from __future__ import annotations

import threading

import psycopg

from infrastructure.pg_indexes import build_concurrently
from tests.servers import PostgresCluster


def _index(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[object, ...] | None:
    return conn.execute(
        "SELECT indexrelid::bigint, indisvalid FROM pg_index"
        " WHERE indexrelid = to_regclass('things_until')"
    ).fetchone()


def test_an_index_an_interrupted_build_left_invalid_is_built_again(
    postgres: PostgresCluster,
) -> None:
    with psycopg.connect(postgres.new_database(), autocommit=True) as conn:
        conn.execute("CREATE TABLE things (id int PRIMARY KEY, until double precision)")
        conn.execute("INSERT INTO things SELECT n, n FROM generate_series(1, 1000) AS n")
        build_concurrently(conn, "things_until", "things", "until")
        built = _index(conn)
        assert built is not None and built[1] is True
        build_concurrently(conn, "things_until", "things", "until")
        assert _index(conn) == built, "a valid index is kept as it is"
        # What a build killed half-way leaves: the index named, and marked not valid.
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s", (built[0],))
        build_concurrently(conn, "things_until", "things", "until")
        rebuilt = _index(conn)
        assert rebuilt is not None and rebuilt[1] is True
        assert rebuilt[0] != built[0], "dropped and built again"
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute("EXPLAIN SELECT id FROM things WHERE until < 5").fetchall()
        assert "things_until" in str(plan)


def test_processes_that_start_together_build_an_index_once_without_a_deadlock(
    postgres: PostgresCluster,
) -> None:
    """A concurrent build waits for every other session's snapshot, and a second build
    waiting for the table holds one: replicas starting together deadlocked, and the aborted
    build left its index INVALID."""
    url = postgres.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE things (id int PRIMARY KEY, until double precision)")
        conn.execute("INSERT INTO things SELECT n, n FROM generate_series(1, 20000) AS n")
    for _ in range(5):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP INDEX IF EXISTS things_until")
        assert _start_together(url, 3) == []
        with psycopg.connect(url, autocommit=True) as conn:
            found = _index(conn)
        assert found is not None and found[1] is True, "built, and valid"


def _start_together(url: str, processes: int) -> list[BaseException]:
    """What each of `processes` sessions building the index at once raised."""
    start = threading.Barrier(processes)
    errors: list[BaseException] = []

    def starting() -> None:
        try:
            with psycopg.connect(url) as conn:
                start.wait()
                build_concurrently(conn, "things_until", "things", "until")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=starting) for _ in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
