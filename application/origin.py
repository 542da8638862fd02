"""Where the command being handled came from, so the events it records can say (audit trail)."""

from __future__ import annotations

from contextvars import ContextVar
from uuid import UUID

from application.views import Client

# Set by the edge for each request; unset (None) for work with no client, such as the CLI.
current_client: ContextVar[Client | None] = ContextVar("current_client", default=None)


class CallerSlot:
    """The account whose access token the request carries, once checked: the positions its
    commands reach are published under it too, so its next reads wait for them. Set by the
    edge at the start of each request and filled in by the token check, which Litestar may run
    in a task of its own (where setting a ContextVar would not reach the handler)."""

    account_id: UUID | None = None


current_caller: ContextVar[CallerSlot | None] = ContextVar("current_caller", default=None)
