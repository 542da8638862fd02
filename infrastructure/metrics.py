"""Service metrics on the process's Prometheus registry (HTTP metrics come from Litestar's plugin).

Names follow the conventions: `_total` counters, base units, label values from closed sets.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LOGINS = Counter("tessera_logins", "Login attempts by outcome.", ["outcome"])
REGISTRATIONS = Counter("tessera_registrations", "Accounts registered.")
EMAIL_VERIFICATIONS = Counter("tessera_email_verifications", "Email addresses verified.")
TOKENS = Counter(
    "tessera_tokens",
    "Token operations: issued (login), refreshed, revoked (logout), reuse_detected.",
    ["operation"],
)
EMAILS_SENT = Counter("tessera_emails_sent", "Emails the mail server accepted, by kind.", ["kind"])
EMAIL_ATTEMPTS_FAILED = Counter(
    "tessera_email_attempts_failed", "Delivery attempts that failed (retried until the last)."
)
EMAILS_DEAD = Counter(
    "tessera_emails_dead", "Emails given up on after the last retry (in the dead-letter queue)."
)
PASSWORD_CHANGES = Counter(
    "tessera_password_changes", "Passwords changed, by how: change or reset.", ["via"]
)
EMAIL_QUEUE_DEPTH = Gauge(
    "tessera_email_queue_depth", "Mails recorded and not yet delivered or given up (ledger)."
)
