"""What operators do to accounts: roles, locks, disabling. Each change names its operator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import AccessClaims, Clock
from application.sessions.lifecycle import Sessions
from application.views import AccountView
from domain.account import Account
from domain.errors import AccountNotFound, FieldError, Forbidden, Invalid


def require_role(principal: AccessClaims, role: str) -> None:
    """Roles travel in the access token; revoking one ends the account's sessions, so a token
    never outlives the role it names."""
    if role not in principal.roles:
        raise Forbidden


class Administration:
    def __init__(self, log: EventLog, sessions: Sessions, clock: Clock) -> None:
        self._log = log
        self._sessions = sessions
        self._clock = clock

    def account(self, reference: str) -> AccountView:
        return AccountView.of(self._find(reference))

    def grant_role(self, reference: str, role: str, operator: str) -> bool:
        return self._change(reference, lambda a, at: a.grant_role(role, at, operator))

    def revoke_role(self, reference: str, role: str, operator: str) -> bool:
        return self._change(reference, lambda a, at: a.revoke_role(role, at, operator))

    def lock(self, reference: str, operator: str, until: datetime | None = None) -> bool:
        def lock(account: Account, at: datetime) -> bool:
            if until is not None and until <= at:
                raise Invalid(FieldError("until", "future", "must be in the future"))
            account.lock(at, operator, until)
            return True

        return self._change(reference, lock)

    def unlock(self, reference: str, operator: str) -> bool:
        return self._change(reference, lambda a, at: a.unlock(at, "operator", operator))

    def disable(self, reference: str, operator: str) -> bool:
        return self._change(reference, lambda a, at: a.disable(at, operator))

    def enable(self, reference: str, operator: str) -> bool:
        return self._change(reference, lambda a, at: a.enable(at, operator))

    @retried_on_conflict
    def _change(self, reference: str, change: Callable[[Account, datetime], bool]) -> bool:
        """Applies the change and saves it; False when it changed nothing (already so)."""
        account = self._find(reference)
        now = self._clock.now()
        changed = change(account, now)
        ends_sessions = any(
            type(e).__name__ == "AllSessionsRevoked" for e in account.pending_events
        )
        if ends_sessions:
            with self._sessions.cutting_off(account.id, at=now):
                self._log.save(account)
        else:
            self._log.save(account)
        return changed

    def _find(self, reference: str) -> Account:
        """An account by id, email or username."""
        account = self._log.account_named(reference)
        if account is None:
            raise AccountNotFound
        return account
