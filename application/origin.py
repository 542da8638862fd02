"""Where the command being handled came from, so the events it records can say (audit trail)."""

from __future__ import annotations

from contextvars import ContextVar

from application.views import Client

# Set by the edge for each request; unset (None) for work with no client, such as the CLI.
current_client: ContextVar[Client | None] = ContextVar("current_client", default=None)
