"""The erasure scenario runs: it seeds a long-lived account, erases it and times the read
models catching up (few events here; `make bench` uses BENCH_ERASURE_EVENTS)."""

from __future__ import annotations

from pathlib import Path

from bench.config import load_config
from bench.erasure import erasure_seconds
from bench.seed import password_hash
from bench.service import service_env
from interfaces.settings import Settings, load_settings


def test_erasing_a_long_lived_account_is_timed_with_its_projections(tmp_path: Path) -> None:
    env = service_env(tmp_path, None, None)
    env.update(ARGON2_TIME_COST="1", ARGON2_MEMORY_COST="8", ARGON2_PARALLELISM="1")
    settings = load_settings(env)
    found = erasure_seconds(settings, accounts=2, events=120, password_hash=password_hash(settings))
    assert len(found) == 2
    for command, applied, slowest in found:
        assert 0 < command <= applied
        assert slowest


def test_the_scenarios_are_on_by_default_and_can_be_switched_off() -> None:
    assert load_config({}).erasure and load_config({}).sealing
    assert not load_config({"BENCH_ERASURE": "0", "BENCH_SEALING": "no"}).erasure
    assert load_config({"BENCH_ERASURE_EVENTS": "50"}).erasure_events == 50
    assert Settings  # the settings type the scenario builds from
