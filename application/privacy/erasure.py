"""Forgetting a person (GDPR Art. 17): the account is erased, its data key destroyed.

One save records AccountErased (which carries no personal data: who asked, and when) with the
release of the email and username claims: the commit point. Before it, nothing has changed; after
it, the account reads as erased everywhere, its sessions are over, and its email and username are
free. What follows is destroying the data key (which makes every personal value the events,
snapshots and exports hold unreadable), dropping the account's snapshots and deleting the mails
kept as files for the person: done at once by the command, and again by the `erasures`
projection, so a process killed in between is finished by the projector. Read models forget the
person when their projections apply AccountErased.

Destroying the key writes the erasure to the ledger kept with the keys, in the same step of the
key store (DataKeys.forget): the account, when, where its AccountErased stands, and the claims it
released. An event store restored from before the erasure lacks the event, but the ledger does
not: `reapply` erases the account there again (application/restore.py finds them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.factors.reauthentication import Proof, Reauthentication
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import AccessClaims, Clock, Erased
from application.sessions.lifecycle import Sessions
from application.tracing import traced
from domain.account import Account, EmailClaim, IdentityClaim, UsernameClaim
from domain.errors import AccountNotFound

log = logging.getLogger(__name__)

SELF = "self"  # the operator an erasure names when the person asked for it themselves
RESTORE = "restore"  # the operator of an erasure re-applied to a restored event store


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
            self.finish(self._record(account.id, operator))

    def reapply(self, erased: Erased) -> bool:
        """Erases again an account the erasure ledger names and a restored event store does not
        (a backup older than the erasure): recorded as an erasure whose operator names the
        restore, releasing the claims the ledger lists (their values, sealed under the destroyed
        key, can no longer be read to find them). False when it is already erased (another
        process re-applied it first)."""
        operator = f"{RESTORE} (re-applied the erasure of {erased.at:%Y-%m-%dT%H:%M:%SZ})"
        try:
            with self._sessions.cutting_off(erased.account_id):
                again = self._record(erased.account_id, operator, erased.claims)
                self.finish(replace(again, at=erased.at))
        except AccountNotFound:
            return False
        return True

    @retried_on_conflict
    def _record(self, account_id: UUID, operator: str, released: Sequence[UUID] = ()) -> Erased:
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
        listed = (self._claim(claim_id) for claim_id in released)
        claims += [c for c in listed if c is not None and c.account_id == account.id]
        claims = list({claim.id: claim for claim in claims}.values())
        for claim in claims:
            claim.release(now)
        account.erase(now, operator)
        recordings = self._log.save(account, *claims)
        position = next(
            r.notification.id
            for r in recordings
            if isinstance(r.domain_event, Account.AccountErased)
        )
        return Erased(account.id, now, position, tuple(claim.id for claim in claims))

    def finish(self, erased: Erased) -> None:
        """What follows the commit: idempotent, so the projection may do it again. The key is
        destroyed and the ledger written in one step of the key store (DataKeys.forget)."""
        self._drop_snapshots(erased.account_id)
        self._log.keys.forget(erased)
        # The mails sent to the person and kept as files (the embedded default's mail drop)
        # hold their address and more in plain text: no key to destroy, so they go.
        self._forget_mails(erased.account_id)

    def finish_recorded(self, account_id: UUID, at: datetime, position: int, version: int) -> None:
        """finish() for an AccountErased read from the log (version: its originator version).
        When the command that recorded it died before destroying the key, the key still opens
        the account as it was before, so the ledger gets the claims of its values."""
        claims: tuple[UUID, ...] = ()
        if not self._log.keys.forgotten([account_id]):
            claims = self._claims_before(account_id, version)
        self.finish(Erased(account_id, at, position, claims))

    def _claims_before(self, account_id: UUID, version: int) -> tuple[UUID, ...]:
        """Every claim (each generation) of the values the account held before its erasure:
        the ledger lists more than it released, and a re-applied erasure releases those of them
        the account holds."""
        try:
            account: Account = self._log.repository.get(account_id, version=version - 1)
        except AggregateNotFoundError:
            return ()
        kinds: list[tuple[type[EmailClaim | UsernameClaim | IdentityClaim], str, str]] = [
            (EmailClaim, "email", account.email),
            (UsernameClaim, "username", account.username),
            *(
                (IdentityClaim, "identity", f"{i.provider}:{i.subject}")
                for i in account.identity_list()
            ),
        ]
        # Under every live version of the fingerprint key, as claims are made.
        values = [
            (kind, fingerprint)
            for kind, what, value in kinds
            for fingerprint in self._log.keys.fingerprints(what, value)
        ]
        ids: list[UUID] = []
        for kind, value in values:
            generation = 0
            while self._log.find(claim_id := kind.id_for(value, generation), kind) is not None:
                ids.append(claim_id)
                generation += 1
        return tuple(ids)

    def _claim(self, claim_id: UUID) -> EmailClaim | UsernameClaim | IdentityClaim | None:
        kinds: tuple[type[EmailClaim | UsernameClaim | IdentityClaim], ...] = (
            EmailClaim,
            UsernameClaim,
            IdentityClaim,
        )
        for kind in kinds:
            claim = self._log.find(claim_id, kind)
            if claim is not None:
                return claim
        return None

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
        for event, position in events:
            assert isinstance(event, Account.AccountErased)
            self._erasure.finish_recorded(
                event.originator_id, event.timestamp, position, event.originator_version
            )
        self._view.insert_tracking(tracking)
