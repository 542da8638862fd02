"""Forgetting a person (GDPR Art. 17): the account is erased, its data key destroyed.

One save records AccountErased (which carries no personal data: who asked, and when) with the
release of the email and username claims: the commit point. Before it, nothing has changed; after
it, the account reads as erased everywhere, its sessions are over, and its email and username are
free. What follows is destroying the data key (which makes every personal value the events,
snapshots and exports hold unreadable), dropping the account's snapshots and deleting the mails
kept as files for the person: done at once by the command, and again by the `erasures`
projection, so a process killed in between is finished by the projector. Read models forget the
person when their projections apply AccountErased.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.factors.reauthentication import Proof, Reauthentication
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import AccessClaims, Clock
from application.sessions.lifecycle import Sessions
from application.tracing import traced
from domain.account import Account, EmailClaim, IdentityClaim, UsernameClaim
from domain.errors import AccountNotFound

log = logging.getLogger(__name__)

SELF = "self"  # the operator an erasure names when the person asked for it themselves


class Erasure:
    def __init__(
        self,
        log: EventLog,
        reauthentication: Reauthentication,
        sessions: Sessions,
        drop_snapshots: Callable[[UUID], None],
        clock: Clock,
        forget_mails: Callable[[UUID], None] = lambda account_id: None,
    ) -> None:
        self._log = log
        self._reauthentication = reauthentication
        self._sessions = sessions
        self._drop_snapshots = drop_snapshots
        self._clock = clock
        self._forget_mails = forget_mails

    @traced
    def erase_own(self, claims: AccessClaims, proof: Proof) -> None:
        """The person's own request, re-authenticated (application/factors/reauthentication.py): a
        stolen access token alone must not erase anyone."""
        account = self._account(claims.account_id)
        # A code is spent on this copy, as at login, though nothing of it is saved: the erasure
        # reloads the account.
        self._reauthentication.prove(account, claims, proof, command="erase")
        self._erase(account, SELF)

    @traced
    def erase(self, reference: str, operator: str) -> UUID:
        """An operator's erasure of the account named by id, email or username."""
        account = self._log.account_named(reference)
        if account is None:
            raise AccountNotFound
        self._erase(account, operator)
        return account.id

    def _erase(self, account: Account, operator: str) -> None:
        with self._sessions.cutting_off(account.id):
            self._record(account.id, operator)
            self.finish(account.id)

    @retried_on_conflict
    def _record(self, account_id: UUID, operator: str) -> None:
        account = self._account(account_id)  # afresh: a rerun decides on the winner's state
        now = self._clock.now()
        # Under every live version of the fingerprint key.
        claims: list[EmailClaim | UsernameClaim | IdentityClaim] = [
            *self._log.claims_held(EmailClaim, "email", account.email, account.id),
            *self._log.claims_held(UsernameClaim, "username", account.username, account.id),
            # Each linked identity's claim too: the provider's subject is free again, and
            # nothing keyed on it leads to the erased account.
            *(
                claim
                for identity in account.identity_list()
                for claim in self._log.claims_held(
                    IdentityClaim, "identity", f"{identity.provider}:{identity.subject}", account.id
                )
            ),
        ]
        for claim in claims:
            claim.release(now)
        account.erase(now, operator)
        self._log.save(account, *claims)

    def finish(self, account_id: UUID) -> None:
        """What follows the commit: idempotent, so the projection may do it again."""
        self._drop_snapshots(account_id)
        self._log.keys.forget(account_id)
        # The mails sent to the person and kept as files (the embedded default's mail drop)
        # hold their address and more in plain text: no key to destroy, so they go.
        self._forget_mails(account_id)

    def _account(self, account_id: UUID) -> Account:
        account = self._log.find(account_id, Account)
        if account is None:
            raise AccountNotFound
        return account


class ErasureFinisher:
    """The projection that finishes every erasure recorded, whatever happened to the process
    that recorded it: a key outlives its AccountErased event only until this has run."""

    name = "erasures"
    topics: tuple[str, ...] = (get_topic(Account.AccountErased),)

    def __init__(self, view: TrackingRecorder, erasure: Erasure) -> None:
        self._view = view
        self._erasure = erasure

    @property
    def view(self) -> TrackingRecorder:
        return self._view

    def process_events(
        self, events: Sequence[tuple[DomainEventProtocol[Any], int]], tracking: Tracking
    ) -> None:
        for event, _ in events:
            self._erasure.finish(event.originator_id)
        self._view.insert_tracking(tracking)
