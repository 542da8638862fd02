"""`python -m bench.scale` counts what each request costs PostgreSQL: these checks fail if the
counting reads nothing (pg_stat_statements not loaded, or the wrong database filtered)."""

from __future__ import annotations

import pytest

from bench.scale import compare

pytestmark = pytest.mark.postgres


def test_the_scale_bench_counts_each_requests_statements_and_buffers() -> None:
    small, large = compare(small=20, large=40, runs=1, seconds=0)
    for costs in (small, large):
        assert costs["login"]["saves"] == 1
        assert costs["login"]["buffers touched"] > 0
        # A refresh is one step of its session's chain in Redis: PostgreSQL is not asked.
        assert costs["refresh"]["statements"] == 0
        assert costs["refresh"]["redis commands"] == 1
        # A seeded account is three events of its own (registered, verification asked, verified).
        assert costs["GET /me, account loaded from the store"]["rows"] == 3
        assert costs["GET /me"]["statements"] == 0  # the copy in memory
