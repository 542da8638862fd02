"""The shipped list of common passwords (see data/common-passwords.txt for its source and licence)."""

from __future__ import annotations

from pathlib import Path

SHIPPED = Path(__file__).parent / "data" / "common-passwords.txt"


def load_common_passwords(path: Path | None = None) -> frozenset[str]:
    lines = (path or SHIPPED).read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().casefold() for line in lines if line and not line.startswith("#"))
