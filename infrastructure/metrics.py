"""Service metrics on the process's Prometheus registry (HTTP metrics come from Litestar's plugin).

Names follow the conventions: `_total` counters, base units, label values from closed sets. The
business counters are counted from the events a save recorded, so they count facts, once each,
whichever entry point caused them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

LOGINS = Counter(
    "tessera_logins", "Login attempts by outcome (the problem code, or success).", ["outcome"]
)
REGISTRATIONS = Counter("tessera_registrations", "Accounts registered.")
EMAIL_VERIFICATIONS = Counter("tessera_email_verifications", "Email addresses verified.")
PASSWORD_RESET_REQUESTS = Counter(
    "tessera_password_reset_requests", "Password resets requested for existing accounts."
)
LOCKOUTS = Counter("tessera_lockouts", "Accounts locked after consecutive failed logins.")
TOKENS = Counter(
    "tessera_tokens",
    "Session token operations: issued (a session started), refreshed, revoked, reuse_detected.",
    ["operation"],
)
APPEND_SECONDS = Histogram(
    "tessera_event_store_append_seconds",
    "Time to append one save's events to the event store.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
EMAILS_SENT = Counter("tessera_emails_sent", "Emails the mail server accepted, by kind.", ["kind"])
EMAIL_ATTEMPTS_FAILED = Counter(
    "tessera_email_attempts_failed", "Delivery attempts that failed (retried until the last)."
)
EMAILS_DEAD = Counter(
    "tessera_emails_dead", "Emails given up on after the last retry (in the dead-letter queue)."
)
PASSWORD_CHANGES = Counter(
    "tessera_password_changes", "Passwords changed (by the user or a reset)."
)


class EventMetrics:
    """Counts what each save recorded (an observer of the EventLog)."""

    _COUNTERS: dict[str, Any] = {
        "Registered": REGISTRATIONS,
        "EmailVerified": EMAIL_VERIFICATIONS,
        "PasswordChanged": PASSWORD_CHANGES,
        "PasswordResetRequested": PASSWORD_RESET_REQUESTS,
        "AccountLocked": LOCKOUTS,
        "SessionStarted": TOKENS.labels(operation="issued"),
        "SessionRevoked": TOKENS.labels(operation="revoked"),
        "AllSessionsRevoked": TOKENS.labels(operation="revoked"),
        "RefreshTokenReuseDetected": TOKENS.labels(operation="reuse_detected"),
    }

    def saved(self, events: list[Any], seconds: float) -> None:
        APPEND_SECONDS.observe(seconds)
        for event in events:
            counter = self._COUNTERS.get(type(event).__name__)
            if counter is not None:
                counter.inc()


EMAIL_QUEUE_DEPTH = Gauge(
    "tessera_email_queue_depth", "Mails recorded and not yet delivered or given up (ledger)."
)


# Set by every process that runs the container, every few seconds: in multiprocess mode each
# live process writes its reading and /metrics shows the largest.
PROJECTION_LAG_EVENTS = Gauge(
    "tessera_projection_lag_events",
    "Events recorded that the projection has yet to read.",
    ["projection"],
    multiprocess_mode="livemax",
)
PROJECTION_LAG_SECONDS = Gauge(
    "tessera_projection_lag_seconds",
    "Age of the oldest event the projection has yet to read (0 when caught up).",
    ["projection"],
    multiprocess_mode="livemax",
)


def report_projection_lag(projection: str, events: int, seconds: float) -> None:
    PROJECTION_LAG_EVENTS.labels(projection=projection).set(events)
    PROJECTION_LAG_SECONDS.labels(projection=projection).set(seconds)


def watch_queue_depth(depth: Callable[[], float]) -> None:
    """A live gauge reads the ledger at scrape time; in multiprocess mode (several server
    processes) that is not possible, and the workers' own endpoint reports it instead."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        EMAIL_QUEUE_DEPTH.set_function(depth)


# Known label values exist from the start at 0, so rate() and increase() see their first rise.
for _operation in ("issued", "refreshed", "revoked", "reuse_detected"):
    TOKENS.labels(operation=_operation)
for _outcome in (
    "success",
    "mfa_required",
    "invalid_credentials",
    "account_locked",
    "rate_limited",
    "email_not_verified",
    "invalid_mfa_code",
    "invalid_mfa_token",
):
    LOGINS.labels(outcome=_outcome)
for _kind in (
    "verification",
    "password_reset",
    "password_changed",
    "new_sign_in",
    "account_locked",
    "mfa_enabled",
    "mfa_disabled",
):
    EMAILS_SENT.labels(kind=_kind)
