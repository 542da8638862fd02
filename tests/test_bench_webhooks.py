"""The webhook scenario's parts run (`make bench` runs the whole, bench/webhooks.py): the
receiver as a process lists what arrived, with the body's time for the lag; the backlog and the
paced writes make one profile update each, through the application layer; the figures'
arithmetic; the lag's stages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from application.webhooks.records import QueuedDelivery
from bench.config import load_config
from bench.seed import password_hash, seed_accounts, username
from bench.service import service_env
from bench.webhooks import (
    ReceiverProcess,
    per_second,
    percentiles,
    stages,
    write_backlog,
    write_paced,
)
from domain.account import Account
from interfaces.container import build
from interfaces.settings import load_settings


def test_the_receiver_process_lists_each_arrival_with_its_body_time(tmp_path: Path) -> None:
    receiver = ReceiverProcess(tmp_path / "receiver.log")
    try:
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        for n in range(3):
            body = f'{{"type":"account.profile_updated","timestamp":"{stamp}","data":{{}}}}'
            answer = httpx.post(receiver.url, content=body, headers={"webhook-id": f"msg_{n}"})
            assert answer.status_code == 200
        rows = receiver.records()
        assert [(r[1], r[2], r[3]) for r in rows] == [(200, f"msg_{n}", stamp) for n in range(3)]
        receiver.mark()
        assert receiver.records() == []
    finally:
        receiver.stop()


def test_the_backlog_and_the_paced_writes_are_profile_updates_one_each(tmp_path: Path) -> None:
    env = service_env(tmp_path, None, None)
    env.update(ARGON2_TIME_COST="1", ARGON2_MEMORY_COST="8", ARGON2_PARALLELISM="1")
    settings = load_settings(env)
    container = build(settings)
    try:
        seed_accounts(container, 0, 8, password_hash(settings))
        accounts = [container.log.account_named(username(n)) for n in range(8)]
        mine: list[Account] = [a for a in accounts if a is not None]
        before = [a.version for a in mine]
        write_backlog(container, mine, 20)
        written, seconds = write_paced(container, mine, rate=200.0, seconds=1)
        assert written == 200 and seconds >= 0.99
        after = [container.log.find(a.id, Account) for a in mine]
        assert sum(a.version for a in after if a) - sum(before) == 220
    finally:
        container.close()


def test_the_figures_arithmetic() -> None:
    assert per_second([[10.0, 200], [11.0, 200], [12.0, 200]]) == pytest.approx(1.0)
    p50, p99 = percentiles([float(n) for n in range(1, 101)])
    assert p50 == pytest.approx(50.5) and 98 < p99 <= 100
    assert load_config({}).webhooks and load_config({}).webhook_events == 10_000
    assert not load_config({"BENCH_WEBHOOKS": "0"}).webhooks
    assert load_config({}).webhook_lag_rate == 0  # half the delivery rate
    assert load_config({"BENCH_WEBHOOK_LAG_RATE": "150"}).webhook_lag_rate == 150


def test_the_lags_stages_are_read_from_the_ledgers_rows(tmp_path: Path) -> None:
    container = build(load_settings(service_env(tmp_path, None, None)))
    try:
        recorded = datetime(2026, 12, 7, 3, 0, 0, tzinfo=UTC)
        delivery = QueuedDelivery(
            id="msg_1",
            endpoint_id="e",
            account_id="a",
            position=1,
            type="account.profile_updated",
            body="{}",
            sealed_personal="",
        )
        container.webhook_feed.view.record([delivery], recorded, None)  # type: ignore[attr-defined]
        committed = "2026-12-07T02:59:59.800000+00:00"  # 200 ms before it was recorded
        arrived = recorded.timestamp() + 0.3  # 300 ms after
        rows = [[arrived, 200, "msg_1", committed], [arrived, 200, "msg_unknown", committed]]
        assert stages(container, rows) == (
            "commit to recorded 200/200 ms, recorded to arrival 300/300 ms (p50/p99)"
        )
    finally:
        container.close()
