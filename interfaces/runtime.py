"""What runs once the object graph is built: the answers of /health/ready, and the background
threads (lag reports, the mail redelivery sweep, the webhook sweep, the purge of expired
revocations, the projectors, the in-process mail worker).
The composition root (interfaces/container.py) hands it the parts; it builds none."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import redis

from application.mail.outbox import MailOutbox
from application.persistence.event_log import EventLog
from application.webhooks.feed import WebhookFeed
from application.webhooks.replay import Replays
from infrastructure.broker import MailBroker
from infrastructure.data_keys import WrappedDataKeys
from infrastructure.expired_state import ExpiredState
from infrastructure.lag_reports import LagReports
from infrastructure.projector import Lag, Projector
from interfaces.settings import Settings
from interfaces.stores.roles import Wakeups

log = logging.getLogger(__name__)
IN_PROCESS_POLL_MS = 200


class Runtime:
    def __init__(
        self,
        settings: Settings,
        log: EventLog,
        projectors: list[Projector],
        lag_reports: LagReports,
        outbox: MailOutbox,
        mail_broker: MailBroker,
        wakeups: Wakeups | None,
        webhook_feed: WebhookFeed,
        redis: redis.Redis | None,
        key_store: WrappedDataKeys | None = None,
        replays: Replays | None = None,
        expired_state: ExpiredState | None = None,
    ) -> None:
        self._settings = settings
        self._log = log
        self._projectors = projectors
        self._lag_reports = lag_reports
        self._outbox = outbox
        self._mail_broker = mail_broker
        self._wakeups = wakeups
        self._webhook_feed = webhook_feed
        self._replays = replays
        self._redis = redis
        self._key_store = key_store  # a key store of its own (KEY_STORE_URL): one more dependency
        self._expired_state = expired_state  # None where Redis holds the shared state
        self._stop = threading.Event()
        self._started = False

    def readiness(self) -> dict[str, str]:
        """What /health/ready reports: each dependency "ok" or "unreachable", each asked one
        cheap question, and the projections as the lag reporter last read them."""
        checks: dict[str, str] = {}
        try:
            self._log.outage.check()  # known down: say so at once, not after the retries
            self._log.recorder.max_notification_id()
            checks["event_store"] = "ok"
        except Exception:
            checks["event_store"] = "unreachable"
        if self._redis is not None:
            try:
                self._redis.ping()
                checks["redis"] = "ok"
            except Exception:
                checks["redis"] = "unreachable"
        if self._key_store is not None:
            try:
                self._key_store.holds_nothing()
                checks["key_store"] = "ok"
            except Exception:
                checks["key_store"] = "unreachable"
        if checks["event_store"] == "ok":
            try:
                # Without a recent reading (no reporter runs in this process, or it has
                # stopped), the lag is measured now: an old reading is not trusted.
                lags = self._lag_reports.recent() or self._lag_reports.measure()
                limit = self._settings.projection_lag_threshold
                late = any(lag.seconds > limit for lag in lags.values())
                checks["projections"] = "lagging" if late else "ok"
            except Exception:
                checks["projections"] = "unreachable"
        return checks

    def projection_lag(self) -> dict[str, Lag]:
        """Each projection's lag, read now: reported to the metrics and kept for /health/ready."""
        return self._lag_reports.read()

    @property
    def runs_in_one_process(self) -> bool:
        """Without Redis there is no broker to share: `tessera serve` does everything itself."""
        return not self._mail_broker.durable

    def start_background(self) -> None:
        """Inside `tessera serve`: the lag metrics; on the embedded default also the
        projections, the mail worker, redelivery of what the in-memory broker lost with
        the last process, and the purge of expired revocations. Once: a second lifespan of the same app (an ASGI test client's, or a
        server that starts the app twice) must not run every projection twice."""
        if self._started:
            return
        self._started = True
        self._start_lag_reports()
        if not self.runs_in_one_process:
            return
        # In-memory queues cost nothing to poll: a short poll lets the process stop in a fifth
        # of a second instead of two (a worker notices a stop only at its threads' next poll).
        self._mail_broker.start_worker(
            self._settings.worker_threads,
            poll_ms=IN_PROCESS_POLL_MS,
            webhook_threads=self._settings.webhook_worker_threads,
        )
        self._start_redelivery(first_sweep_older_than=timedelta(0))
        self._start_webhook_sweep()
        self._start_forgetting()
        for projector in self._projectors:
            projector.start(self._stop)

    def run_projectors(self) -> None:
        """Runs the projections in this process until stop() (the `tessera projector` command)."""
        self._start_lag_reports()
        self._start_redelivery(first_sweep_older_than=self._lost_after)
        self._start_webhook_sweep()
        self._start_forgetting()
        if self._wakeups is not None:
            self._wakeups.listen(self._projectors, self._stop)
        threads = [projector.start(self._stop) for projector in self._projectors]
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)

    def stop(self) -> None:
        """Asks background loops to finish; the container's close() then releases what they
        used."""
        self._stop.set()

    @property
    def _lost_after(self) -> timedelta:
        """A queued mail older than its longest retry wait and five minutes more was lost with
        its message (an in-memory broker gone, Redis restarted without its data): a backstop.
        A worker's death is mended sooner, in Redis (MailBroker) and by the outbox's resume()."""
        return timedelta(milliseconds=self._settings.mail_retry_max_backoff, minutes=5)

    def _start_lag_reports(self) -> None:
        self._lag_reports.start(self._stop)

    def _start_webhook_sweep(self, interval: float = 1.0) -> None:
        """Wakes a courier for each lane whose head is due: each retry at its time (the
        schedule is kept in the ledger, not in the broker), and what a crash or a lost message
        left behind. Every second, so the first retry comes 5 to 6 seconds after its failure."""

        def sweep() -> None:
            while not self._stop.is_set():
                try:
                    if self._replays is not None:
                        self._replays.resume()  # a dead process's replays, from their cursor
                    self._webhook_feed.wake_due()
                except Exception:
                    log.exception("webhook sweep failed; trying again")
                self._stop.wait(interval)

        threading.Thread(target=sweep, name="webhook-sweep", daemon=True).start()

    def _start_redelivery(self, first_sweep_older_than: timedelta) -> None:
        interval = 30.0

        def sweep() -> None:
            older_than = first_sweep_older_than
            while not self._stop.is_set():
                try:
                    self._outbox.redeliver_stale(older_than)
                except Exception:
                    log.exception("mail redelivery sweep failed; trying again")
                older_than = self._lost_after
                self._stop.wait(interval)

        threading.Thread(target=sweep, name="mail-redelivery", daemon=True).start()

    def _start_forgetting(self) -> None:
        """Deletes the revocation list's expired rows where they sit in tables (no Redis), in
        the one process of those running this that holds the lease: a first pass at start,
        then one every ten minutes (sooner while a backlog remains)."""
        expired = self._expired_state
        if expired is None:
            return

        def sweep() -> None:
            try:
                while not self._stop.is_set():
                    more = False
                    try:
                        more = expired.forget_some()
                    except Exception:
                        if not self._stop.is_set():  # not the stores closing under it
                            log.exception("purge of expired revocations failed; trying again")
                    self._stop.wait(expired.next_pass_after(more).total_seconds())
            finally:
                expired.release()

        threading.Thread(target=sweep, name="expired-state", daemon=True).start()
