"""Service metrics on the process's Prometheus registry (HTTP metrics come from Litestar's plugin).

Names follow the conventions: `_total` counters, base units, label values from closed sets.
"""

from __future__ import annotations

from prometheus_client import Counter

LOGINS = Counter("tessera_logins", "Login attempts by outcome.", ["outcome"])
REGISTRATIONS = Counter("tessera_registrations", "Accounts registered.")
EMAIL_VERIFICATIONS = Counter("tessera_email_verifications", "Email addresses verified.")
TOKENS = Counter(
    "tessera_tokens",
    "Token operations: issued (login), refreshed, revoked (logout), reuse_detected.",
    ["operation"],
)
EMAILS = Counter("tessera_emails", "Emails handed to the transport, by kind.", ["kind"])
PASSWORD_CHANGES = Counter(
    "tessera_password_changes", "Passwords changed, by how: change or reset.", ["via"]
)
