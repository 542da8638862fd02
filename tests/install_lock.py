"""One installer at a time: pytest-xdist runs the tests in several processes, and in a fresh clone
two of them may find tests/oidc/node_modules (or axe-core, or chromium) missing at once. Two npm
installs into one folder, or two apt-gets, break each other, so each check-and-install runs under
an exclusive lock: the second process waits, then finds the work done."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Under var/ (ignored by git), so that a lock file never shows up as a change.
LOCKS = Path(__file__).resolve().parent.parent / "var" / "locks"


@contextmanager
def installing(what: str) -> Iterator[None]:
    """Held across the check and the install; released when the process ends, even killed."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    with (LOCKS / f"{what}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
