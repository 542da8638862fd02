"""The operator's side of a rotation, as real processes: `tessera serve` with a SECRET_KEY that
opens nothing in the store refuses to start (an error naming SECRET_KEY, exit code 2), and
`tessera admin rekey` wraps the store's keys under the new key and says when the fallback can go."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

from interfaces.container import build
from interfaces.settings import load_settings
from tests.conftest import FAST_ARGON2
from tests.e2e.test_serve import PASSWORD, tessera


def key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tessera(), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_wrong_key_refuses_to_serve_and_rekey_retires_the_fallback(tmp_path: Path) -> None:
    old, new = key(), key()
    env = {**os.environ, **FAST_ARGON2, "DATA_DIR": str(tmp_path / "var"), "PORT": "0"}
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    container = build(load_settings({**env, "SECRET_KEY": old}))
    container.registration.register("ada@example.com", "ada", PASSWORD)
    container.close()

    refused = run({**env, "SECRET_KEY": new}, "serve")
    assert refused.returncode == 2
    assert "SECRET_KEY opens none of the keys this store holds" in refused.stdout + refused.stderr

    rotating = {**env, "SECRET_KEY": new, "SECRET_KEY_FALLBACKS": old}
    first = run(rotating, "admin", "rekey")
    assert first.returncode == 0, first.stderr
    assert "keys wrapped again under SECRET_KEY" in first.stdout
    assert "run rekey again" in first.stdout
    second = run(rotating, "admin", "rekey")
    assert "rekey: 0 keys wrapped again" in second.stdout
    assert "SECRET_KEY_FALLBACKS can go" in second.stdout

    listed = run({**env, "SECRET_KEY": new}, "admin", "list")  # the new key alone now
    assert listed.returncode == 0, listed.stderr
    assert "ada@example.com" in listed.stdout
    assert run({**env, "SECRET_KEY": old}, "admin", "list").returncode == 2


def test_rekey_service_keys_makes_new_versions_once_and_says_when_the_old_ones_go(
    tmp_path: Path,
) -> None:
    """After a compromise: new versions of the service's own keys, reported key by key; run
    again, it makes no further version and the accounts still sign in."""
    env = {**os.environ, **FAST_ARGON2, "DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": key()}
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    container = build(load_settings(env))
    container.registration.register("ada@example.com", "ada", PASSWORD)
    container.close()

    first = run(env, "admin", "rekey", "--service-keys")
    assert first.returncode == 0, first.stderr
    assert (
        "service keys: new versions of refresh tags, csrf, sealed values, fingerprints"
        in first.stdout
    )
    for name in ("refresh tags", "csrf", "sealed values"):
        assert f"{name}: version 2 makes new values from" in first.stdout
    assert "version 1 still checks what it made: run rekey again after" in first.stdout
    assert "to seal the TOTP secrets again under it, and after" in first.stdout
    assert "fingerprints: version 2" in first.stdout
    assert "version 1 still names every claim made before" in first.stdout

    again = run(env, "admin", "rekey", "--service-keys")
    assert again.returncode == 0, again.stderr
    assert "new versions of none (already rotating)" in again.stdout
    listed = run(env, "admin", "list")
    assert listed.returncode == 0 and "ada@example.com" in listed.stdout
    assert run(env, "admin", "rekey").returncode == 0
