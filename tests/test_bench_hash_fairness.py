"""The hash gate fairness scenario runs against a real `tessera serve` (cheap argon2 here, and a
second of each phase: `make bench` uses production cost and BENCH_DURATION)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config import load_config
from bench.hash_fairness import measure
from bench.seed import password_hash
from bench.service import service_env
from interfaces.settings import load_settings

# A real server flooded by a few loops: alone.
pytestmark = pytest.mark.serial


def test_a_login_is_timed_quiet_and_while_another_account_floods(tmp_path: Path) -> None:
    env = service_env(tmp_path / "var", None, None)
    env.update(ARGON2_TIME_COST="1", ARGON2_MEMORY_COST="1024", ARGON2_PARALLELISM="1")
    found = measure(
        env, password_hash(load_settings(env)), seconds=3, loops=6, log=tmp_path / "log"
    )
    assert found.quiet and found.loaded
    assert set(found.quiet_statuses) == {200} and set(found.loaded_statuses) == {200}
    assert found.flood[401] > 0  # the flood's wrong passwords were hashed and refused


def test_the_scenario_is_on_by_default_and_can_be_switched_off() -> None:
    assert load_config({}).hash_fairness and load_config({}).fairness_loops == 16
    assert not load_config({"BENCH_HASH_FAIRNESS": "0"}).hash_fairness
    assert load_config({"BENCH_FAIRNESS_LOOPS": "4"}).fairness_loops == 4
