"""Pooled connections the server dropped (a restart) are replaced before use, without the
library's pre-ping round trip on every checkout."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from application.persistence.event_log import EventLog
from infrastructure.persistence import IDLE_PING_AFTER, Database, fail_fast
from tests.conftest import data_keys
from tests.servers import PostgresCluster


def test_an_idle_pooled_connection_the_server_dropped_is_replaced_before_use(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    database = Database(url=postgres.new_database(), sqlite_path=tmp_path / "unused.sqlite")
    log = EventLog(data_keys(tmp_path), env=database.eventsourcing_env())
    fail_fast(log.recorder, log.outage)
    datastore = log.recorder.datastore  # type: ignore[attr-defined]
    assert not datastore.pre_ping  # the library's ping on every checkout is off
    with datastore.get_connection() as conn:
        conn.execute("SELECT 1")
    name = conninfo_to_dict(database.url)["dbname"]
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        ).fetchone()
    assert dropped is not None and dropped[0] >= 1
    time.sleep(IDLE_PING_AFTER + 0.1)
    for _ in range(datastore.pool.max_size):  # every pooled connection, each handed out once
        with datastore.get_connection() as conn:
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    assert not log.outage.down
    log.close()
