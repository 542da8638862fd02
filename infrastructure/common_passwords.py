"""The shipped list of common passwords (see data/common-passwords.txt for its source and licence)."""

from __future__ import annotations

import functools
from pathlib import Path

SHIPPED = Path(__file__).parent / "data" / "common-passwords.txt"


def load_common_passwords(path: Path | None = None) -> frozenset[str]:
    """The list at `path` (COMMON_PASSWORDS_FILE), read at every start; else the shipped one."""
    return _read(path) if path else _shipped()


@functools.cache
def _shipped() -> frozenset[str]:
    # Part of the package, so the same in every build of the service a process makes.
    return _read(SHIPPED)


def _read(path: Path) -> frozenset[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().casefold() for line in lines if line and not line.startswith("#"))
