"""The two-step sign-in setup's QR code: the otpauth:// link, as every authenticator app
expects to scan it, drawn by segno as inline SVG (no script, no style: within the pages' CSP)."""

from __future__ import annotations

import segno
from markupsafe import Markup


def qr_code(text: str, title: str) -> Markup:
    """An <svg> whose size the stylesheet sets (no width or height of its own). Dark on an
    opaque white, with segno's four-module quiet zone, so a camera finds it on any page."""
    symbol = segno.make(text, micro=False)
    # segno escapes the title and writes only its own attributes: the markup is its own.
    return Markup(  # noqa: S704
        symbol.svg_inline(
            omitsize=True, title=title, svgclass="qr", lineclass=None, dark="#000", light="#fff"
        )
    )
