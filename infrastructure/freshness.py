"""Read your own writes: a read waits, for a bounded time, until its projection has applied the
last position its caller's own commands reached."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from infrastructure.projector import Projector

_FIRST_PAUSE = 0.002  # seconds; doubling up to _LONGEST_PAUSE
_LONGEST_PAUSE = 0.025


class ProjectionWaits:
    """Polls each projection's tracking position (one indexed read). The wait also wakes the
    projector, in this process (the embedded default) and, on PostgreSQL, in whichever process
    runs it (`wake`), so the read costs the projection's own work, not its poll interval."""

    def __init__(
        self,
        projectors: Iterable[Projector],
        bound: float,
        wake: Callable[[str], None] | None = None,
    ) -> None:
        self._projectors = {projector.name: projector for projector in projectors}
        self._bound = bound
        self._wake = wake  # projectors in other processes (PostgresWakeups.notify)

    def reach(self, projection: str, position: int) -> int:
        """Returns at once if `projection` has applied `position`, else when it has or when the
        bound has passed; answers how many positions it is still behind (0: caught up)."""
        if position <= 0:
            return 0
        projector = self._projectors[projection]
        deadline = time.monotonic() + self._bound
        pause = _FIRST_PAUSE
        woken = False
        while True:
            behind = position - projector.position
            if behind <= 0:
                return 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return behind
            projector.nudge()
            if not woken and self._wake is not None:
                self._wake(projection)
            woken = True
            time.sleep(min(pause, remaining))
            pause = min(2 * pause, _LONGEST_PAUSE)
