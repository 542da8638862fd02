"""Every delivery checked the way a receiver would: with the reference Standard Webhooks verifier
from npm (`standardwebhooks`, on Node.js, tests/webhooks/verify.cjs) and with the Python library
of the same name. Both compare `webhook-timestamp` with the real clock (five minutes either way),
so a test verifies what it received before it moves the service's clock."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.servers import npm_package
from tests.webhooks.receiver import Delivery

STANDARDWEBHOOKS_VERSION = "1.3.0"
HERE = Path(__file__).resolve().parent

Verdicts = list[dict[str, str]]  # per delivery: secret → "ok" or why it was refused


def ensure_node_verifier() -> Path:
    """standardwebhooks installed with npm into tests/webhooks/node_modules (ignored by git)."""
    return npm_package(HERE, "standardwebhooks", STANDARDWEBHOOKS_VERSION)


def node_verdicts(deliveries: Sequence[Delivery], secrets: Sequence[str]) -> Verdicts:
    ensure_node_verifier()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing: install Debian's nodejs")
    batch = {
        "secrets": list(secrets),
        "deliveries": [
            {"headers": d.headers, "body": base64.b64encode(d.body).decode("ascii")}
            for d in deliveries
        ],
    }
    answer = subprocess.run(
        [node, str(HERE / "verify.cjs")],
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=HERE,
    )
    verdicts: Verdicts = json.loads(answer.stdout)
    return verdicts


def python_verdicts(deliveries: Sequence[Delivery], secrets: Sequence[str]) -> Verdicts:
    verdicts: Verdicts = []
    for delivery in deliveries:
        verdict = {}
        for secret in secrets:
            try:
                Webhook(secret).verify(delivery.body, delivery.headers)
                verdict[secret] = "ok"
            except WebhookVerificationError as refused:
                verdict[secret] = str(refused)
        verdicts.append(verdict)
    return verdicts


def assert_signed(deliveries: Sequence[Delivery], *secrets: str) -> None:
    """Both verifiers accept every delivery under each of `secrets` (the webhook-signature
    header carries one signature per secret that signs)."""
    assert deliveries, "nothing to verify"
    expected = [dict.fromkeys(secrets, "ok") for _ in deliveries]
    assert node_verdicts(deliveries, secrets) == expected
    assert python_verdicts(deliveries, secrets) == expected


def assert_not_signed_by(deliveries: Sequence[Delivery], secret: str) -> None:
    """Neither verifier accepts any of the deliveries under `secret`."""
    for verdicts in (node_verdicts(deliveries, [secret]), python_verdicts(deliveries, [secret])):
        assert all(v[secret] != "ok" for v in verdicts), verdicts
