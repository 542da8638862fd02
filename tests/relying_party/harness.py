"""panva's openid-client, installed from npm into tests/relying_party/node_modules once per
checkout, run with Node.js as a relying party nobody here wrote."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.servers import npm_package

# 6.x: the current line (ESM, Node.js 20 and later).
OPENID_CLIENT_VERSION = "6.9.1"
HERE = Path(__file__).resolve().parent


def ensure_openid_client() -> Path:
    return npm_package(HERE, "openid-client", OPENID_CLIENT_VERSION)


def run_machine_client(**settings: str) -> dict[str, Any]:
    """machine.mjs with these settings; what it printed."""
    ensure_openid_client()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: install Debian's nodejs")
    done = subprocess.run(
        [node, str(HERE / "machine.mjs"), json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=HERE,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer
