"""What a person let each app (an OpenID Provider client) have: the scopes it may ask for
without asking them again, listed on their account, and withdrawn there, which ends the app's
sessions of theirs.

Kept on the Account rather than in an aggregate per (account, app): the person's trail, the
sealing of their values and their erasure already follow the Account, listing their consents is
one load without an index, and a consent changes about as often as a password (no contention)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from application.clients.registry import Clients
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import Clock
from application.sessions.lifecycle import Sessions
from application.views import Client
from domain.account import Account
from domain.errors import AccountNotFound, ClientNotFound, ConsentNotFound


@dataclass(frozen=True)
class ConsentView:
    client_id: str
    client_name: str
    scopes: list[str]
    granted_at: datetime  # the first grant; a widening keeps it


class Consents:
    def __init__(self, log: EventLog, clients: Clients, sessions: Sessions, clock: Clock) -> None:
        self._log = log
        self._clients = clients
        self._sessions = sessions
        self._clock = clock

    def granted(self, account_id: UUID, client_id: str) -> frozenset[str]:
        """The scopes granted to the app; empty when none (or no such account)."""
        account = self._log.find(account_id, Account)
        return frozenset() if account is None else account.consented_scopes(client_id)

    @retried_on_conflict
    def grant(
        self, account_id: UUID, client_id: str, scopes: Collection[str], client: Client
    ) -> None:
        """Grants `scopes` besides those granted already (a widening adds, never narrows).
        `client`: where the person allowed it from (recorded by the edge with the event)."""
        account = self._account(account_id)
        self._clients.client(client_id)  # ClientNotFound: no consent to an app that is gone
        if account.grant_consent(client_id, scopes, self._clock.now()):
            self._log.save(account)

    @retried_on_conflict
    def revoke(self, account_id: UUID, client_id: str, client: Client) -> None:
        """Withdraws the consent and cuts off the app's sessions of this account: their refresh
        tokens stop at once, their access tokens at the next standing check; the app must ask
        again. ConsentNotFound when there is none.

        The sessions are not listed anywhere to be ended one by one (that list on the account
        made every exchange of one person contend for its stream): a cutoff for (account, app)
        in the shared store refuses all that they had up to the withdrawal, and an exchange
        racing it reads the consent again after its save (Sessions.start_app)."""
        account = self._account(account_id)
        if client_id not in account.consented_clients():
            raise ConsentNotFound
        with self._sessions.cutting_off_app(account_id, client_id) as now:
            account.revoke_consent(client_id, now)
            self._log.save(account)

    def of(self, account_id: UUID) -> list[ConsentView]:
        """Oldest first; an app removed since is left out (it can use nothing any more)."""
        account = self._account(account_id)
        views = []
        for client_id, scopes, granted_at in account.consent_list():
            try:
                name = self._clients.client(client_id).name
            except ClientNotFound:
                continue
            views.append(ConsentView(client_id, name, list(scopes), granted_at))
        return views

    def _account(self, account_id: UUID) -> Account:
        account = self._log.find(account_id, Account)
        if account is None or account.erased:
            raise AccountNotFound
        return account
