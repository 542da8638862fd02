"""panva's openid-client, installed from npm into tests/relying_party/node_modules once per
checkout, run with Node.js as a relying party nobody here wrote."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.servers import npm_package

# 6.x: the current line (ESM, Node.js 20 and later).
OPENID_CLIENT_VERSION = "6.9.1"
HERE = Path(__file__).resolve().parent


def ensure_openid_client() -> Path:
    return npm_package(HERE, "openid-client", OPENID_CLIENT_VERSION)


def node_script(name: str, settings: dict[str, str]) -> list[str]:
    """The command that runs NAME (a script of this folder) with openid-client installed."""
    ensure_openid_client()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: install Debian's nodejs")
    return [node, str(HERE / name), json.dumps(settings)]


def run_machine_client(**settings: str) -> dict[str, Any]:
    """machine.mjs with these settings; what it printed."""
    done = subprocess.run(
        node_script("machine.mjs", settings),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=HERE,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def run_web_client(browser_step: Callable[[str], str], **settings: str) -> dict[str, Any]:
    """flow.mjs with these settings: `browser_step` takes the authorization URL it printed and
    returns the URL the browser came back to; what it printed at the end."""
    process = subprocess.Popen(
        node_script("flow.mjs", settings),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=HERE,
    )
    try:
        assert process.stdin and process.stdout
        first = process.stdout.readline()
        if not first:
            raise AssertionError(process.communicate(timeout=10)[1])
        callback = browser_step(json.loads(first)["authorizationUrl"])
        out, err = process.communicate(callback + "\n", timeout=60)
        assert process.returncode == 0, err
        answer: dict[str, Any] = json.loads(out)
        return answer
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
