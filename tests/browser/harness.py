"""What the browser tests need from the machine, installed by the harness itself when missing
(as tests/servers.py and ops/install-test-servers.sh do for PostgreSQL and Redis): Debian's
chromium, driven by Playwright (which never downloads a browser here), and axe-core from npm."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from tests.install_lock import installing
from tests.servers import npm_package

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing the browser would fetch for itself: the tests talk to 127.0.0.1 only.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE_VERSION = "4.10.3"
HERE = Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = HERE.parent.parent / "var" / "screenshots"


def ensure_chromium() -> str:
    """/usr/bin/chromium, from Debian's package when missing (apt-get, as root)."""
    with installing("apt"):  # xdist's workers: one apt-get at a time
        if not os.path.exists(CHROMIUM):
            if os.geteuid() != 0:
                raise RuntimeError("chromium is missing: install Debian's chromium, or run as root")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
    return CHROMIUM


def ensure_axe() -> Path:
    """axe-core's browser build, installed with npm into this folder (ignored by git)."""
    npm_package(HERE, "axe-core", AXE_VERSION)
    return AXE


def virtual_authenticator(context: Any, page: Any) -> tuple[Any, str]:
    """The browser's own virtual authenticator on this page (the DevTools WebAuthn domain): a
    platform authenticator that keeps discoverable credentials and verifies its user. The
    DevTools session and the authenticator's id."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )["authenticatorId"]
    return cdp, str(authenticator)
