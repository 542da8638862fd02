"""Reading and editing one's own profile."""

from __future__ import annotations

import asyncio
from uuid import UUID

from application.persistence.account_views import AccountViews
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import Caller, Clock
from application.tracing import traced
from application.views import AccountView
from domain.account import Account
from domain.errors import AccountNotFound


class Profile:
    def __init__(self, log: EventLog, views: AccountViews, clock: Clock) -> None:
        self._log = log
        self._views = views
        self._clock = clock

    async def show(self, caller: Caller) -> AccountView:
        """From this process's copy when the account has not changed since it was made (no
        I/O at all), else from the event store, off the event loop."""
        copy = self._views.cached(caller.account_id, caller.mark)
        if copy is None:
            copy = await asyncio.to_thread(self._views.load, caller.account_id, caller.mark)
        return copy.view

    @traced
    @retried_on_conflict
    def update(self, account_id: UUID, display_name: str) -> AccountView:
        account = self._account(account_id)
        account.update_profile(display_name.strip(), at=self._clock.now())
        self._log.save(account)
        return AccountView.of(account)

    def _account(self, account_id: UUID) -> Account:
        account = self._log.find(account_id, Account)
        if account is None:
            raise AccountNotFound
        return account
