"""The read models' personal values: sealed under their person's data key, or fingerprinted.

The events keep a person's values sealed under the person's data key (application.persistence.sealing); the
rows projected from them keep them so too. A row holds each value it shows (an address, a
username, a name, an IP, a user agent) sealed under the same key as the events (DataKeys.seal),
so destroying the key at erasure leaves every copy of the row unreadable: the dead row versions
PostgreSQL keeps until a vacuum, its WAL, replicas and base backups, a SQLite file's free pages.
A value the accounts are looked up by (email, username) is kept besides as a keyed fingerprint
(DataKeys.fingerprints, as the uniqueness claims are): an exact match, never a substring. A row
is fingerprinted under the newest version of the fingerprint key, and a look-up compares every
live version, so a row written while the key is being replaced is found whichever version made
it; the rows written before are fingerprinted anew as their accounts' claims are (ClaimsRekeyed).

A stored value is "" (none), ERASED (its person was forgotten before it was projected: there is
no key to seal it under any more), or the base64 of what DataKeys.seal made of the value's JSON,
bound to its owner and its place ("sessions.ip"), so that no value can be moved to another
column or person.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterable
from typing import Any
from uuid import UUID

import msgspec

from application.persistence.sealing import PERSONAL_FIELDS
from application.ports import DataKeys, ForgottenOwner
from application.read_side.read_batch import Row
from domain.account import ERASED

# Per table: each personal value a row shows, and the column that keeps it sealed.
SEALED_COLUMNS: dict[str, dict[str, str]] = {
    "accounts": {
        "email": "sealed_email",
        "username": "sealed_username",
        "display_name": "sealed_display_name",
    },
    "sessions": {"ip": "sealed_ip", "user_agent": "sealed_user_agent"},
    "audit_log": {"ip": "sealed_ip", "user_agent": "sealed_user_agent"},
}
# Per table: the values looked up by, and the column that keeps each one's fingerprint.
FINGERPRINTS: dict[str, dict[str, str]] = {
    "accounts": {"email": "email_fingerprint", "username": "username_fingerprint"},
}
# Per table: the column naming whose key seals a row's values.
OWNERS = {"accounts": "id", "sessions": "account_id", "audit_log": "account_id"}
# An audit row's details (a JSON object) keep these of their values sealed, each on its own.
DETAILS = "details"

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _context(owner: UUID, place: str) -> bytes:
    return owner.bytes + b"read model:" + place.encode()


def _owner(owner: UUID | str | None) -> UUID | None:
    if owner is None or isinstance(owner, UUID):
        return owner
    return UUID(owner)


class ReadSeals:
    def __init__(self, keys: DataKeys) -> None:
        self._keys = keys

    def seal(self, owner: UUID | str | None, place: str, value: Any) -> str:
        if value is None or value == "":
            return ""
        person = _owner(owner)
        if value == ERASED or person is None:
            return ERASED
        try:
            sealed = self._keys.seal(person, _context(person, place), _encode(value))
        except ForgottenOwner:
            return ERASED  # erased while the batch was read: the rows are forgotten with it
        return base64.b64encode(sealed).decode("ascii")

    def open(self, owner: UUID | str | None, place: str, stored: str) -> Any:
        """The value; ERASED once its owner's key is destroyed."""
        if not stored or stored == ERASED:
            return stored
        person = _owner(owner)
        if person is None:
            return ERASED
        opened = self._keys.open(person, _context(person, place), base64.b64decode(stored))
        return ERASED if opened is None else _decode(opened)

    def forgotten(self, owners: Iterable[UUID | str | None]) -> set[UUID]:
        """Those of `owners` erased, asked of the key store itself: another process's erasure
        is seen at once, where open() may still use a key this process cached before it."""
        people = {person for owner in owners if (person := _owner(owner)) is not None}
        return self._keys.forgotten(people) if people else set()

    def fingerprint(self, kind: str, value: str) -> str:
        """What a row keeps of a value it is looked up by (`value` normalised as registration
        normalises it): its fingerprint under the newest version of the key."""
        if not value or value == ERASED:
            return ""
        return self._keys.fingerprints(kind, value)[0]

    def fingerprints(self, kind: str, value: str) -> list[str]:
        """What an exact look-up by `value` compares: its fingerprint under each live version."""
        return self._keys.fingerprints(kind, value)

    def sealed(self, table: str, owner: UUID | str | None, values: Row) -> Row:
        """`values` of a row of `table` as stored: each personal value replaced by its sealed
        column (and its fingerprint, for one looked up by)."""
        stored = dict(values)
        for name, column in FINGERPRINTS.get(table, {}).items():
            if name in stored:
                stored[column] = self.fingerprint(name, stored[name])
        for name, column in SEALED_COLUMNS.get(table, {}).items():
            if name in stored:
                stored[column] = self.seal(owner, f"{table}.{name}", stored.pop(name))
        return stored

    def sealed_details(self, owner: UUID | str | None, details: dict[str, Any]) -> dict[str, Any]:
        """An audit row's details with each personal value sealed."""
        return {
            field: self.seal(owner, f"audit_log.details.{field}", value)
            if field in PERSONAL_FIELDS
            else value
            for field, value in details.items()
        }

    def opened(self, table: str, rows: Iterable[Row]) -> list[Row]:
        """The rows as they read: each sealed column replaced by its value (ERASED once its
        person is forgotten), fingerprints left out; an audit row's details as an object. The
        keys of all the rows' owners are read at once."""
        rows = list(rows)
        owner_column = OWNERS.get(table)
        if owner_column is not None:
            self.warm(row[owner_column] for row in rows)
        return [self._opened(table, row, owner_column) for row in rows]

    def warm(self, owners: Iterable[UUID | str | None]) -> None:
        found: Collection[UUID] = {person for o in owners if (person := _owner(o)) is not None}
        if found:
            self._keys.warm(found)

    def _opened(self, table: str, row: Row, owner_column: str | None) -> Row:
        owner = row.get(owner_column) if owner_column else None
        plain = {
            column: value
            for column, value in row.items()
            if column not in FINGERPRINTS.get(table, {}).values()
        }
        for name, column in SEALED_COLUMNS.get(table, {}).items():
            if column in plain:
                plain[name] = self.open(owner, f"{table}.{name}", plain.pop(column))
        if table == "audit_log" and DETAILS in plain:
            details = json.loads(plain[DETAILS])
            plain[DETAILS] = {
                field: self.open(owner, f"audit_log.details.{field}", value)
                if field in PERSONAL_FIELDS and isinstance(value, str)
                else value
                for field, value in details.items()
            }
        return plain
