"""The projections' lag, read every few seconds by one thread: for the metrics, and for
/health/ready, which answers from the last reading instead of asking the database itself (a
reading costs a few queries a projection; a probe may come every second from every balancer)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from application.ports import Clock
from infrastructure import metrics
from infrastructure.projector import Lag, Projector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LagReading:
    lags: dict[str, Lag]
    taken_at: datetime


class LagReports:
    def __init__(self, projectors: list[Projector], clock: Clock, interval: float = 5.0) -> None:
        self._projectors = projectors
        self._clock = clock
        self.interval = interval
        self._last: LagReading | None = None

    def measure(self) -> dict[str, Lag]:
        """Each projection's lag now, reported to the metrics as it is read."""
        now = self._clock.now()
        lags = {}
        for projector in self._projectors:
            lag = lags[projector.name] = projector.lag(now)
            metrics.report_projection_lag(projector.name, lag.events, lag.seconds)
        return lags

    def read(self) -> dict[str, Lag]:
        """A reading, kept as the last one (what the reporting thread takes)."""
        taken_at = self._clock.now()
        lags = self.measure()
        self._last = LagReading(lags, taken_at)
        return lags

    def recent(self) -> dict[str, Lag] | None:
        """The last reading, unless none was taken within two intervals: a reporter that has
        stopped or hangs must not keep a projection looking current."""
        last = self._last
        if last is None:
            return None
        age = (self._clock.now() - last.taken_at).total_seconds()
        return last.lags if age <= 2 * self.interval else None

    def start(self, stop: threading.Event) -> threading.Thread:
        def report() -> None:
            while not stop.is_set():
                try:
                    self.read()
                except Exception:
                    log.warning("could not read projection lag; trying again", exc_info=True)
                stop.wait(self.interval)

        thread = threading.Thread(target=report, name="projection-lag", daemon=True)
        thread.start()
        return thread
