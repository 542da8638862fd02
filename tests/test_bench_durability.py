"""The benchmark's PostgreSQL flushes every commit, as a real deployment does; the tests' own
cluster runs with fsync=off for speed, and the benchmark refuses to publish figures made on it."""

from __future__ import annotations

import pytest

from bench.run import check_durability
from tests.servers import PostgresCluster, postgres_cluster

pytestmark = pytest.mark.postgres


def test_the_bench_cluster_flushes_every_commit() -> None:
    with postgres_cluster(durable=True) as cluster:
        assert check_durability(cluster) == {"fsync": "on", "synchronous_commit": "on"}


def test_a_cluster_without_fsync_is_refused(postgres: PostgresCluster) -> None:
    with pytest.raises(RuntimeError, match="must flush every commit"):
        check_durability(postgres)
