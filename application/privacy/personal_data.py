"""Everything held about a person, as one JSON document (GDPR Art. 15 and 20).

The account as it stands, every session it started, every event of its own and of its sessions
with the personal values they carry (as the audit trail shows events: never a hash or a sealed
secret), and the mails sent to it. Streamed a piece at a time: an account with years of history
is never held in memory whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from uuid import UUID

from application.audit.trail import trail_entry
from application.mail.outbox import MAIL_KINDS, MAIL_WORTHY, delivery_key
from application.persistence.event_log import EventLog
from application.ports import Clock
from application.read_side.read_batch import Row
from application.read_side.read_models import instant
from application.read_side.read_seals import ReadSeals
from application.views import AccountView, json_ready
from domain.account import Account
from domain.errors import AccountNotFound

FORMAT = "tessera-personal-data/1"
_BATCH = 500


class SessionHistory(Protocol):
    def all_of(self, account_id: str) -> list[Row]:
        """Every session the account started, live or ended, oldest first."""
        ...


class Deliveries(Protocol):
    def deliveries(self, keys: Iterable[str]) -> list[Row]:
        """The mail ledger's rows for these delivery keys (those that exist)."""
        ...


def _json(value: Any) -> str:
    return json.dumps(json_ready(value), ensure_ascii=False, sort_keys=True)


class PersonalDataExport:
    def __init__(
        self,
        log: EventLog,
        sessions: SessionHistory,
        mails: Deliveries,
        clock: Clock,
        seals: ReadSeals,
    ) -> None:
        self._log = log
        self._sessions = sessions
        self._mails = mails
        self._clock = clock
        self._seals = seals

    def document(self, account_id: UUID) -> Iterator[str]:
        """The document in pieces of JSON text that join into one object. AccountNotFound,
        raised at once, for an unknown or erased account."""
        account = self._log.find(account_id, Account)
        if account is None:
            raise AccountNotFound(str(account_id))
        return self._pieces(account)

    def _pieces(self, account: Account) -> Iterator[str]:
        profile = {
            **json_ready(AccountView.of(account)),
            "roles": list(account.roles),
            "mfa_enabled": account.mfa_enabled,
            # The apps the person let in (OpenID Provider clients), and what each may have.
            "consents": [
                {"client_id": client_id, "scopes": list(scopes), "granted_at": at.isoformat()}
                for client_id, scopes, at in account.consent_list()
            ],
        }
        yield (
            f'{{"format":"{FORMAT}","exported_at":{_json(self._clock.now())},'
            f'"account":{_json(profile)},"sessions":['
        )
        sessions = self._seals.opened("sessions", self._sessions.all_of(str(account.id)))
        yield ",".join(_json(_session(row)) for row in sessions)
        yield '],"events":['
        mail_keys: dict[str, str] = {}
        first = True
        for stream in [account.id, *(UUID(row["id"]) for row in sessions)]:
            for event in self._stream(stream):
                if isinstance(event, MAIL_WORTHY):
                    mail_keys[delivery_key(event)] = MAIL_KINDS[type(event)]
                entry = trail_entry(event, None, account.id)
                yield ("" if first else ",") + _json(
                    {
                        "type": entry.type,
                        "aggregate": entry.aggregate,
                        "aggregate_id": entry.aggregate_id,
                        "version": entry.version,
                        "time": entry.time,
                        "ip": entry.ip,
                        "user_agent": entry.user_agent,
                        "details": entry.details,
                    }
                )
                first = False
        yield '],"mails":['
        rows = self._mails.deliveries(mail_keys)
        yield ",".join(
            _json(
                {
                    "kind": mail_keys[row["key"]],
                    "to": account.email,
                    "status": row["status"],
                    "updated_at": instant(row["updated_at"]),
                }
            )
            for row in sorted(rows, key=lambda row: row["updated_at"])
        )
        yield "]}"

    def _stream(self, aggregate_id: UUID) -> Iterator[Any]:
        after: int | None = None
        while True:
            batch = list(self._log.events.get(aggregate_id, gt=after, limit=_BATCH))
            yield from batch
            if len(batch) < _BATCH:
                return
            after = batch[-1].originator_version


def _session(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "started_at": instant(row["started_at"]),
        "last_used_at": instant(row["last_used_at"]),
        "expires_at": instant(row["expires_at"]),
        "ip": row["ip"],
        "user_agent": row["user_agent"],
        "revoked_at": None if row["revoked_at"] is None else instant(row["revoked_at"]),
        "revocation_reason": row["revocation_reason"],
    }
