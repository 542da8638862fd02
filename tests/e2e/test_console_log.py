"""LOG_FORMAT=console, as `make run` sets it: short lines a person reads on the terminal, the
start saying where the mail goes; LOG_FILE keeps its ECS lines for the machines that read it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_serve import serving

ROOT = Path(__file__).resolve().parent.parent.parent


def test_make_run_asks_for_console_lines() -> None:
    run = re.search(r"^run:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert run and "LOG_FORMAT=$${LOG_FORMAT:-console}" in run.group(1)


def test_console_lines_on_the_terminal_and_ecs_in_the_file(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    log_file = tmp_path / "tessera.log"
    with serving("sqlite", request, tmp_path, LOG_FORMAT="console", LOG_FILE=str(log_file)) as (
        base,
        data_dir,
    ):
        assert httpx.get(f"{base}/health/live").status_code == 200
    terminal = (tmp_path / "serve.log").read_text().splitlines()
    assert terminal and not any(line.startswith("{") for line in terminal)
    mail = f"mail is written to {(data_dir / 'mail').resolve()}/ as .eml files"
    assert any(
        re.fullmatch(r"\d\d:\d\d:\d\d INFO +" + re.escape(mail) + ".*", line) for line in terminal
    )
    assert any(re.search(r"INFO +serving on http://127\.0\.0\.1:\d+ ", line) for line in terminal)
    assert any(re.search(r" GET /health/live 200 [\d.]+ ms$", line) for line in terminal)
    in_file = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(line["message"].startswith("mail is written to") for line in in_file)
    assert all("@timestamp" in line for line in in_file)


def test_by_default_the_lines_are_ecs_and_say_where_mail_goes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with serving("sqlite", request, tmp_path) as (_, data_dir):
        pass
    lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()]
    messages = [line["message"] for line in lines]
    assert any(
        m.startswith(f"mail is written to {(data_dir / 'mail').resolve()}/") for m in messages
    )
