"""Each process's copies of the accounts it has shown, trusted while their mark holds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from uuid import UUID

from application.persistence.event_log import EventLog
from application.ports import ChangeMarks
from application.views import AccountView
from domain.account import Account
from domain.errors import AccountNotFound
from domain.session import SessionTerms


@dataclass(frozen=True)
class AccountCopy:
    """What the hot paths need of an account: the view `/me` shows, the terms a refresh
    judges its session by, and the apps a code exchange checks the consent of."""

    view: AccountView
    terms: SessionTerms
    consented_clients: frozenset[str] = frozenset()  # the apps a code exchange may start for


def trusted(mark: str | None) -> bool:
    """Only a version mark vouches for a copy: no mark (forgotten, or the shared store was
    emptied) proves nothing, and a "changing" mark says a save is in flight or died mid-way."""
    return mark is not None and mark.isdigit()


class AccountViews:
    """The account as `GET /api/users/me` shows it and a refresh judges it, from memory while the account's mark (read
    with the revocation check, in the same round trip) is the one the copy was made under, and
    from the event store otherwise. Any save of the account, in any process, changes the mark
    before and after it commits, so a copy is never served past a change."""

    def __init__(self, log: EventLog, marks: ChangeMarks, size: int = 10_000) -> None:
        self._log = log
        self._marks = marks
        self._size = size
        self._copies: OrderedDict[UUID, tuple[str, AccountCopy]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, account_id: UUID, mark: str | None) -> AccountCopy | None:
        if not trusted(mark):
            return None
        with self._lock:
            copy = self._copies.get(account_id)
            if copy is None or copy[0] != mark:
                return None
            self._copies.move_to_end(account_id)
            return copy[1]

    def load(self, account_id: UUID, mark: str | None) -> AccountCopy:
        """Reads the account from the event store, keeping a copy if its mark vouches for it."""
        account = self._log.find(account_id, Account)
        if account is None:
            raise AccountNotFound
        copy = AccountCopy(
            AccountView.of(account), account.session_terms(), account.consented_clients()
        )
        if mark is None:
            # Give the account a mark again, so the next request can use the copy.
            self._marks.settle(account_id, account.version)
            mark = str(account.version)
        if trusted(mark) and self._size:
            # The mark was read before this load, so the copy is at least as new as the mark
            # says: a save after the read changes the mark, and the next request reloads.
            with self._lock:
                self._copies[account_id] = (mark, copy)
                self._copies.move_to_end(account_id)
                while len(self._copies) > self._size:
                    self._copies.popitem(last=False)
        return copy
