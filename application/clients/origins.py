"""The web origins a browser app of a live client may call the provider's endpoints from (CORS):
each client's `web_origins`, by default the origins of its redirect URIs."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from application.clients.registry import Clients
from application.ports import Clock

# A change made by this process is seen at once (Clients counts its changes); one made by
# another process (the admin CLI, another server) within this. A removed client's origin may be
# let through for that long: the token endpoint refuses the removed client itself at once.
REREAD_AFTER = timedelta(seconds=10)


class ClientOrigins:
    def __init__(self, clients: Clients, clock: Clock) -> None:
        self._clients = clients
        self._clock = clock
        self._origins: frozenset[str] = frozenset()
        self._by_client: dict[str, frozenset[str]] = {}
        self._read_at: datetime | None = None
        self._revision = -1

    async def allows(self, origin: str) -> bool:
        """Whether `origin`, exactly as a browser sends it, is a web origin of a live client."""
        now = self._clock.now()
        stale = (
            self._read_at is None
            or self._revision != self._clients.revision
            or now - self._read_at >= REREAD_AFTER
        )
        if stale:
            revision = self._clients.revision
            # The clients are read from the event store: off the event loop.
            self._origins = await asyncio.to_thread(self._read)
            self._read_at, self._revision = now, revision
        return origin in self._origins

    async def allows_for(self, client_id: str, origin: str) -> bool:
        """Whether `origin` is a web origin of this live client: an answer for one client is
        read only by its own pages."""
        await self.allows(origin)  # rereads the clients when stale
        return origin in self._by_client.get(client_id, frozenset())

    def _read(self) -> frozenset[str]:
        views = self._clients.list()
        self._by_client = {view.client_id: frozenset(view.web_origins) for view in views}
        return frozenset(origin for view in views for origin in view.web_origins)
