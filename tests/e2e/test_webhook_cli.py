"""`tessera admin webhook ...` on a store made by the service: each command, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interfaces.cli import main
from interfaces.container import build
from interfaces.settings import load_settings
from tests.conftest import FAST_ARGON2


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["admin", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_webhook_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {"DATA_DIR": str(tmp_path / "var"), **FAST_ARGON2}.items():
        monkeypatch.setenv(name, value)
    build(load_settings()).close()  # the service made its store

    code, out, _ = run(
        capsys, "webhook", "create", "https://crm.example/h", "--event", "account.registered"
    )
    assert code == 0
    made = json.loads(out)
    assert made["secret"].startswith("whsec_")
    webhook_id = made["id"]
    code, out, _ = run(capsys, "webhook", "list")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [webhook_id]
    assert "whsec_" not in out
    code, out, _ = run(
        capsys, "webhook", "update", webhook_id, "--event", "account.erased", "--disable"
    )
    assert code == 0 and json.loads(out)["events"] == ["account.erased"]
    assert json.loads(out)["enabled"] is False
    code, out, _ = run(capsys, "webhook", "show", webhook_id)
    assert json.loads(out)["disabled_reason"] == "operator"
    code, out, _ = run(capsys, "webhook", "rotate-secret", webhook_id)
    assert json.loads(out)["secret"] not in (made["secret"], "")
    code, out, _ = run(capsys, "webhook", "replay", webhook_id, "0")
    assert code == 0 and json.loads(out)["since_position"] == 1
    code, out, _ = run(capsys, "webhook", "deliveries", webhook_id)
    assert code == 0 and out == ""

    code, _, err = run(capsys, "webhook", "create", "http://crm.example/h", "--event", "x")
    assert code == 2 and "https" in err
    code, _, err = run(capsys, "webhook", "replay", webhook_id, "99999")
    assert code == 2 and "since" in err
    code, _, err = run(capsys, "webhook", "replay", webhook_id, "2026-01-01T00:00:00")
    assert code == 2
    code, _, err = run(capsys, "webhook", "remove", webhook_id)
    assert code == 0
    code, _, err = run(capsys, "webhook", "show", webhook_id)
    assert code == 2 and "no webhook endpoint" in err
