"""Read your own writes: a read waits, for a bounded time, until its projection has applied the
last position its caller's own commands reached."""

from __future__ import annotations

import time
from collections.abc import Iterable

from infrastructure.projector import Projector

_FIRST_PAUSE = 0.002  # seconds; doubling up to _LONGEST_PAUSE
_LONGEST_PAUSE = 0.025


class ProjectionWaits:
    """Polls each projection's tracking position (one indexed read). Where the projection runs
    in this process (the embedded default) the wait also wakes its projector, so the read costs
    the projection's own work and not its poll interval."""

    def __init__(self, projectors: Iterable[Projector], bound: float) -> None:
        self._projectors = {projector.name: projector for projector in projectors}
        self._bound = bound

    def reach(self, projection: str, position: int) -> int:
        """Returns at once if `projection` has applied `position`, else when it has or when the
        bound has passed; answers how many positions it is still behind (0: caught up)."""
        if position <= 0:
            return 0
        projector = self._projectors[projection]
        deadline = time.monotonic() + self._bound
        pause = _FIRST_PAUSE
        while True:
            behind = position - projector.position
            if behind <= 0:
                return 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return behind
            projector.nudge()
            time.sleep(min(pause, remaining))
            pause = min(2 * pause, _LONGEST_PAUSE)
