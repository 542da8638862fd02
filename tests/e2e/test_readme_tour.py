"""The README's five-minute tour, run as written against a real `tessera serve`.

A newcomer copies these lines into a shell: each must work there, from the clone's folder, with
the CLI called as `.venv/bin/tessera`. The test runs the tour's shell blocks in order with bash,
changing only what a person at a keyboard changes: the port (the server here is on a free one),
the time between a request and its mail arriving (a person reads in between; here a loop waits
for the mail), and the half-minute wait for the authenticator's next code (here until the next
30-second step begins, which is what the wait is for).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_serve import serving

ROOT = Path(__file__).resolve().parent.parent.parent
TOUR_HEADING = "## A five-minute tour"
NEXT_CODE = 'sleep "$(python3 -c "import time; print(30 - time.time() % 30 + 1)")"'


def tour_script(readme: str, api: str) -> str:
    section = readme.split(TOUR_HEADING, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert len(blocks) >= 5, "the tour's shell blocks"
    script = "\n".join(blocks)
    assert "API=http://127.0.0.1:8000" in script
    script = script.replace("API=http://127.0.0.1:8000", f"API={api}")
    assert "sleep 30" in script
    script = script.replace("sleep 30", NEXT_CODE)
    for kind in ("verify-email", "reset-password"):
        # A mail arrives a moment after its request; a person reading the answer waits that long.
        wait = f"for _ in $(seq 100); do grep -qs '{kind}?token=' var/mail/*.eml && break; sleep 0.1; done\n"
        script = re.sub(rf"^(\w+=\$\(grep -ho '{kind})", wait + r"\1", script, flags=re.MULTILINE)
    return "set -euo pipefail\n" + script


def test_the_readme_tour_runs_as_written(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    # The clone's folder: its .venv, and var/ as the server's DATA_DIR (serving puts it there).
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    with serving("sqlite", request, tmp_path) as (api, data_dir):
        assert data_dir == tmp_path / "var"
        environ = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "DATABASE_URL")}
        done = subprocess.run(
            ["bash", "-c", tour_script(readme, api)],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert '"email_verified":true' in out  # verified from the mail's token
    assert '"display_name":"Ada Lovelace"' in out
    assert '"recovery_codes":[' in out  # MFA confirmed
    assert out.count('"access_token":') == 1  # the second step of the MFA sign-in answered a pair
    assert "invalid_access_token" in out  # signed out: the old access token stopped at once
    assert "grant-role ada: done" in out
    assert "Registered" in out  # the audit replay of the account
