"""Personal values sealed per person wherever events and snapshots are stored (crypto-shredding).

An event cannot be deleted from the store, so the values that identify a person are never
written in plain text: each is sealed (application.ports.DataKeys) under the data key of the
account it belongs to, and destroying that key forgets them in every event, snapshot, backup and
export at once. The mapper below does it for every event the EventLog stores and reads, so the
domain, the projections and the mails see plain values while the key exists, and ERASED after.

A sealed value is stored as {"_type_": "sealed", "_data_": base64(owner id, 16 bytes, then the
key store's output)}: it names its owner, so reading it needs no knowledge of the event.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEventProtocol, Snapshot
from eventsourcing.persistence import (
    Cipher,
    Compressor,
    Mapper,
    StoredEvent,
    Transcoder,
    Transcoding,
)

from application.ports import DataKeys
from domain.account import ERASED, Account

# Every field, in any event or snapshot, that holds a value identifying (or belonging to) the
# person; named in README, "Privacy and erasure". A field is sealed wherever it appears.
PERSONAL_FIELDS = frozenset(
    {
        "email",
        "username",
        "display_name",
        "ip",
        "user_agent",
        "client",  # where a command came from: {"ip", "user_agent"}
        "password_hash",
        "previous_password_hashes",
    }
)
# What a field reads as once its owner is forgotten (ERASED unless named here).
_ERASED_AS: dict[str, Any] = {
    "client": {"ip": ERASED, "user_agent": ERASED},
    "previous_password_hashes": [],
}
OWNER = "_owner"  # stamped on pending events by EventLog.save: whose key seals them; not stored
SEALS = "_seals"  # on a decoded event: each sealed field's digest (see `digest`)

_encode = msgspec.json.encode
_decode = msgspec.json.decode


@dataclass(frozen=True)
class Sealed:
    owner: UUID
    data: bytes  # what DataKeys.seal made

    def digest(self) -> str:
        """SHA-256 of the sealed bytes (owner id included), hex: what the audit trail's hash
        chain commits to, so that erasure, which leaves these bytes as they are, changes none
        of its hashes. Reveals nothing of the value (AES-GCM under a random nonce)."""
        return hashlib.sha256(self.owner.bytes + self.data).hexdigest()


class SealedAsText(Transcoding):
    type = Sealed
    name = "sealed"

    def encode(self, obj: Sealed) -> str:
        return base64.b64encode(obj.owner.bytes + obj.data).decode("ascii")

    def decode(self, data: str) -> Sealed:
        raw = base64.b64decode(data)
        return Sealed(UUID(bytes=raw[:16]), raw[16:])


def erased_value(field: str) -> Any:
    value = _ERASED_AS.get(field, ERASED)
    return (
        dict(value)
        if isinstance(value, dict)
        else list(value)
        if isinstance(value, list)
        else value
    )


def _context(owner: UUID, field: str) -> bytes:
    return owner.bytes + field.encode()


def seal_fields(state: dict[str, Any], owner: UUID | None, keys: DataKeys) -> None:
    """Replaces each personal value in `state` by its sealed form, in place."""
    for field in PERSONAL_FIELDS.intersection(state):
        value = state[field]
        if value is None or isinstance(value, Sealed):
            continue
        if owner is None:
            raise ValueError(f"no owner to seal {field!r} for: it must not be stored in plain text")
        state[field] = Sealed(owner, keys.seal(owner, _context(owner, field), _encode(value)))


def open_fields(state: dict[str, Any], keys: DataKeys) -> dict[str, str]:
    """Replaces each sealed value in `state` by its plain value (or the erased form once its
    owner is forgotten), in place; returns each opened field's digest."""
    digests = {}
    for field in PERSONAL_FIELDS.intersection(state):
        value = state[field]
        if not isinstance(value, Sealed):
            continue
        digests[field] = value.digest()
        plain = keys.open(value.owner, _context(value.owner, field), value.data)
        state[field] = erased_value(field) if plain is None else _decode(plain)
    return digests


def owner_of(event: DomainEventProtocol[Any], state: dict[str, Any]) -> UUID | None:
    """Whose key seals the event's personal values when the save did not say: the account it
    names, or the Account whose event it is."""
    owner = state.get("account_id")
    if isinstance(owner, UUID):
        return owner
    if isinstance(event, Account.Event):
        return event.originator_id
    return None


class SealingMapper(Mapper[UUID]):
    def __init__(
        self,
        transcoder: Transcoder,
        keys: DataKeys,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
    ) -> None:
        super().__init__(transcoder, compressor, cipher)
        self.keys = keys

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        state = dict(vars(domain_event))
        owner = state.pop(OWNER, None) or owner_of(domain_event, state)
        if isinstance(domain_event, Snapshot):
            inner = dict(state["state"])
            inner_owner = inner.get("account_id")
            seal_fields(
                inner,
                inner_owner if isinstance(inner_owner, UUID) else domain_event.originator_id,
                self.keys,
            )
            state["state"] = inner
        seal_fields(state, owner, self.keys)
        sealed = object.__new__(type(domain_event))
        object.__setattr__(sealed, "__dict__", state)
        return super().to_stored_event(sealed)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        event = super().to_domain_event(stored_event)
        state = vars(event)
        if isinstance(event, Snapshot):
            open_fields(state["state"], self.keys)
        digests = open_fields(state, self.keys)
        if digests:
            state[SEALS] = digests
        return event
