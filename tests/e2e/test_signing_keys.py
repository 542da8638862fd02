"""A real `tessera serve`: the signing keys are made on the first start, kept under DATA_DIR
readable by their owner only, and the same keys are served after a restart; a bad key setting
stops the start with a message naming it."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import serving, tessera

KEY_FILES = ("signing-key.pem", "signing-key-rs256.pem", "signing-key-es256.pem")


def served_jwks(base: str) -> dict[str, object]:
    answer = httpx.get(f"{base}/.well-known/jwks.json", timeout=10)
    assert answer.status_code == 200
    return dict(answer.json())


@pytest.mark.parametrize("deployment", ["sqlite", "postgres"])
def test_the_keys_are_made_once_and_kept_across_restarts(
    deployment: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with serving(deployment, request, tmp_path) as (base, data_dir):
        first = served_jwks(base)
    made = {name: (data_dir / name).read_bytes() for name in KEY_FILES}
    for name in KEY_FILES:
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    assert sorted(key["alg"] for key in first["keys"]) == ["ES256", "EdDSA", "RS256"]  # type: ignore[attr-defined]

    with serving(deployment, request, tmp_path) as (base, data_dir):
        assert served_jwks(base) == first
    assert {name: (data_dir / name).read_bytes() for name in KEY_FILES} == made


def test_a_bad_key_setting_stops_the_start_naming_it(tmp_path: Path) -> None:
    env = {
        **os.environ,
        **FAST_ARGON2,
        "DATA_DIR": str(tmp_path / "var"),
        "PORT": "0",
        "JWT_RSA_PRIVATE_KEY_FILE": str(tmp_path / "missing.pem"),
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    started = subprocess.run(
        [tessera(), "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 2
    said = started.stdout + started.stderr
    assert "JWT_RSA_PRIVATE_KEY_FILE: cannot read" in said
    assert "Traceback" not in said
