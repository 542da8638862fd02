"""Reading and editing one's own profile."""

from __future__ import annotations

from uuid import UUID

from application.event_log import EventLog, retried_on_conflict
from application.ports import Clock
from application.tracing import traced
from application.views import AccountView
from domain.account import Account
from domain.errors import AccountNotFound


class Profile:
    def __init__(self, log: EventLog, clock: Clock) -> None:
        self._log = log
        self._clock = clock

    @traced
    def show(self, account_id: UUID) -> AccountView:
        return AccountView.of(self._account(account_id))

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
