"""What a restore can undo, found and mended: erasures made after the backup that was restored.

The erasure ledger is kept with the keys (DataKeys.erasures), apart from the event store. An
event store restored from a backup older than an erasure still holds the account as it was,
while the key store no longer holds its key: the account's values are unreadable, but it is not
erased there (it could still sign in with a passkey, its sessions live on, its address stays
claimed, its read-model rows stay). `reapply_erasures` compares the two and erases again what the
ledger names and the log does not; every process runs it when it starts.

The other way round (a key store restored from a backup older than the event store) is checked
by `check_keys`, which reads the whole log: an account the log records as erased whose key is back
has it destroyed again; an account that is not erased and whose key is gone is reported, since
its values can no longer be opened (`tessera admin reapply-erasures` runs both).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from uuid import UUID

from eventsourcing.utils import get_topic

from application.persistence.event_log import EventLog
from application.ports import Erased
from application.privacy.erasure import Erasure
from domain.account import Account

log = logging.getLogger(__name__)

_PAGE = 1000


@dataclass
class KeyCheck:
    reapplied: list[UUID] = field(default_factory=list)  # erasures the event store had lost
    forgotten_again: list[UUID] = field(default_factory=list)  # erased, but their keys were back
    lost: list[UUID] = field(default_factory=list)  # not erased, and no key for them


class AfterRestore:
    def __init__(self, log: EventLog, erasure: Erasure) -> None:
        self._log = log
        self._erasure = erasure

    def reapply_erasures(self, every_entry: bool = False) -> list[UUID]:
        """The ledger's accounts the event store holds but does not record as erased, erased
        again. A start reads two rows: the ledger's furthest entry, and the log's event at its
        position. When that is still the account's AccountErased, the log was not restored
        from before it, nor from before any erasure the ledger placed earlier (a restore brings
        back a prefix of the log: every position up to its end, none after), so only entries
        that know no position are checked; otherwise, or with `every_entry`, every entry is,
        with one indexed read of the log each."""
        last = None if every_entry else self._log.keys.last_erasure()
        if (
            last is not None
            and last.position is not None
            and self._log.erased_at(last.position, last.account_id)
        ):
            return self._reapplied(self._log.keys.unplaced_erasures())
        return self._reapplied(self._log.keys.erasures())

    def _reapplied(self, entries: list[Erased]) -> list[UUID]:
        reapplied = []
        for erased in entries:
            if self._log.erasure_recorded(erased.account_id) is not False:
                continue  # erased in the log too, or not in it at all (a backup older still)
            if self._erasure.reapply(erased):
                log.warning(
                    "account %s was erased at %s, but the event store does not record it (it "
                    "was restored from a backup older than the erasure): erasure re-applied",
                    erased.account_id,
                    f"{erased.at:%Y-%m-%dT%H:%M:%SZ}",
                )
                reapplied.append(erased.account_id)
        return reapplied

    def check_keys(self) -> KeyCheck:
        """reapply_erasures, then the whole log against the key store (see the module)."""
        check = KeyCheck(reapplied=self.reapply_erasures(every_entry=True))
        registered: set[UUID] = set()
        erased: set[UUID] = set()
        erased_topic = get_topic(Account.AccountErased)
        topics = [get_topic(Account.Registered), erased_topic]
        start = 1
        while notifications := self._log.recorder.select_notifications(start, _PAGE, topics=topics):
            for notification in notifications:
                account_id = UUID(str(notification.originator_id))
                if notification.topic != erased_topic:
                    registered.add(account_id)
                    continue
                erased.add(account_id)
                if self._log.keys.forgotten([account_id]):
                    continue
                event = self._log.mapper.to_domain_event(notification)
                assert isinstance(event, Account.AccountErased)
                self._erasure.finish_recorded(
                    event.originator_id, event.timestamp, notification.id, event.originator_version
                )
                log.warning(
                    "account %s is erased, but the key store held its key (restored from a "
                    "backup older than the erasure): the key is destroyed again",
                    event.originator_id,
                )
                check.forgotten_again.append(event.originator_id)
            start = notifications[-1].id + 1
        check.lost = sorted(self._log.keys.missing(registered - erased))
        for account_id in check.lost:
            log.error(
                "account %s is not erased, but the key store holds no key for it: its personal "
                "values cannot be opened. Restore the key store from a backup that holds it "
                "(docs/backups.md), or erase the account",
                account_id,
            )
        return check
