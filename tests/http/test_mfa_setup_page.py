"""Two-step sign-in setup on the account page, through the real ASGI app: the otpauth:// link
as a QR code (inline SVG, within the strict CSP), the key as text beside it, and the recovery
codes offered as a text file. A real browser scans the code and downloads the file in
tests/browser/test_pages_in_browser.py."""

from __future__ import annotations

import html
import re
from urllib.parse import unquote

import pyotp
import segno

from interfaces.container import Container
from interfaces.pages.guard import CONTENT_SECURITY_POLICY
from tests.conftest import FakeClock
from tests.http.test_api import register_and_verify
from tests.http.test_pages import Client, csrf_token, sign_in, site  # noqa: F401  (the fixture)

_STEP = re.compile(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?")


def svg_modules(svg: str) -> set[tuple[int, int]]:
    """The dark modules an SVG path of horizontal strokes paints (segno's own form: `M x y`,
    `m dx dy`, `h n`), as (row, column) pairs, quiet zone included."""
    path = re.search(r'<path stroke="#000" d="([^"]+)"', svg)
    assert path, svg
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for command, first, second in _STEP.findall(path.group(1)):
        if command == "M":
            x, y = float(first), float(second)
        elif command == "m":
            x, y = x + float(first), y + float(second)
        else:
            dark.update((int(y), int(x) + i) for i in range(int(first)))
            x += float(first)
    return dark


def matrix_modules(uri: str) -> set[tuple[int, int]]:
    """The dark modules of the QR code segno makes of `uri`, offset by the 4-module quiet zone."""
    symbol = segno.make(uri, micro=False)
    return {
        (row + 4, column + 4)
        for row, line in enumerate(symbol.matrix)
        for column, module in enumerate(line)
        if module & 1
    }


def test_the_setup_shows_the_otpauth_link_as_a_qr_code_within_the_csp(
    site: tuple[Client, Container],  # noqa: F811
    clock: FakeClock,
) -> None:
    client, container = site
    register_and_verify(client, container)
    token = sign_in(client)
    page = client.post("/account/mfa", data={"csrf_token": token, "action": "enable"})
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    uri = html.unescape(re.search(r'id="totp-uri"[^>]*>([^<]+)<', page.text).group(1))  # type: ignore[union-attr]
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)  # type: ignore[union-attr]
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    qr = re.search(r'<div class="qr-frame" id="totp-qr">(<svg .*?</svg>)</div>', page.text, re.S)
    assert qr, page.text
    # Exactly the link, module by module (a browser reads it back from a screenshot too).
    assert svg_modules(qr.group(1)) == matrix_modules(uri)
    assert svg_modules(qr.group(1)) != matrix_modules(uri + "x")
    # Nothing the CSP would refuse: no inline style or script, in the code or anywhere.
    assert "style=" not in page.text and "<style" not in page.text and "<script>" not in page.text
    assert "<title>QR code of the link below</title>" in qr.group(1)


def test_the_recovery_codes_are_offered_as_a_text_file(
    site: tuple[Client, Container],  # noqa: F811
    clock: FakeClock,
) -> None:
    client, container = site
    register_and_verify(client, container)
    token = sign_in(client)
    page = client.post("/account/mfa", data={"csrf_token": token, "action": "enable"})
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)  # type: ignore[union-attr]
    code = pyotp.TOTP(secret).at(clock.now().timestamp())
    shown = client.post(
        "/account/mfa", data={"csrf_token": token, "action": "confirm", "code": code}
    )
    assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", shown.text)
    assert len(codes) == 10
    link = re.search(
        r'<a class="button" id="recovery-codes-file" href="(data:[^"]+)" '
        r'download="tessera-recovery-codes.txt">',
        shown.text,
    )
    assert link, shown.text
    prefix = "data:text/plain;charset=utf-8,"
    assert link.group(1).startswith(prefix)
    text = unquote(html.unescape(link.group(1))[len(prefix) :])
    assert text.startswith("Tessera recovery codes for ada\n")
    assert [line for line in text.splitlines() if re.fullmatch(r"[a-z0-9-]{29}", line)] == codes
