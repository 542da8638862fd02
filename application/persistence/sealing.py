"""Personal values sealed per person wherever events and snapshots are stored (crypto-shredding).

An event cannot be deleted from the store, so the values that identify a person are never
written in plain text: each is sealed (application.ports.DataKeys) under the data key of the
account it belongs to, and destroying that key forgets them in every event, snapshot, backup and
export at once. The mapper below does it for every event the EventLog stores and reads, so the
domain, the projections and the mails see plain values while the key exists, and ERASED after.

A sealed value is stored as {"_type_": "sealed", "_data_": base64(owner id, 16 bytes; the
value's commitment, 32 bytes; the key store's output)}: it names its owner, so reading it needs
no knowledge of the event. What is sealed is a random 16-byte salt followed by the value's JSON;
the commitment is SHA-256 of the same bytes. While the key exists, the salt opens with the value
and binds it to the commitment (the audit trail's export shows both, and `verify` checks them);
once the key is destroyed, the commitment stays and, without its salt, tells nothing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, cast
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
    find_id_convertor,
)
from eventsourcing.utils import resolve_topic

from application.persistence.transcoding import FastJSONTranscoder
from application.ports import DataKeys
from domain.account import ERASED, Account

# Every field, in any event or snapshot, that holds a value identifying (or belonging to) the
# person; named in docs/audit/erasure.md. A field is sealed wherever it appears.
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
        # Passkeys: a credential id and its public key identify the person's authenticator
        # across services that see them; the name is the person's own words.
        "credential_id",
        "public_key",
        "passkey_name",
        "passkeys",  # the Account's collection of them, in snapshots
        # Identities at other providers: the provider's subject names the person there, and
        # the address it vouched for is theirs.
        "subject",
        "identity_email",
        "identities",  # the Account's collection of them, in snapshots
    }
)
# What a field reads as once its owner is forgotten (ERASED unless named here).
_ERASED_AS: dict[str, Any] = {"previous_password_hashes": [], "passkeys": {}, "identities": {}}
# Metadata sealed field by field, so that the trail can show (and bind) each on its own.
_NESTED = {"client": ("ip", "user_agent")}
OWNER = "_owner"  # stamped on pending events by EventLog.save: whose key seals them; not stored
SEALS = "_seals"  # on a decoded event: each opened field's Opened, by path ("email", "client.ip")

_encode = msgspec.json.encode
_decode = msgspec.json.decode


_SALT = 16


@dataclass(frozen=True)
class Sealed:
    owner: UUID
    commitment: bytes  # SHA-256(salt || the value's JSON)
    data: bytes  # what DataKeys.seal made of salt || the value's JSON

    @classmethod
    def of(cls, value: Any, owner: UUID, context: bytes, keys: DataKeys) -> Sealed:
        salted = os.urandom(_SALT) + _encode(value)
        return cls(owner, hashlib.sha256(salted).digest(), keys.seal(owner, context, salted))

    def open(self, context: bytes, keys: DataKeys) -> tuple[Any, bytes] | None:
        """(the value, its salt); None once the owner is forgotten."""
        salted = keys.open(self.owner, context, self.data)
        if salted is None:
            return None
        if not hmac.compare_digest(hashlib.sha256(salted).digest(), self.commitment):
            raise ValueError("a sealed value does not match its commitment")
        return _decode(salted[_SALT:]), salted[:_SALT]


class SealedAsText(Transcoding):
    type = Sealed
    name = "sealed"

    def encode(self, obj: Sealed) -> str:
        return base64.b64encode(obj.owner.bytes + obj.commitment + obj.data).decode("ascii")

    def decode(self, data: str) -> Sealed:
        raw = binascii.a2b_base64(data)  # what base64.b64decode does, without its wrapping
        return Sealed(_owner(raw[:16]), raw[16:48], raw[48:])


@functools.lru_cache(maxsize=4096)
def _owner(raw: bytes) -> UUID:
    """An owner's id from its bytes: a person's values come in runs (an event holds several,
    an account's events follow one another), so most are made once, not once a value."""
    return UUID(bytes=raw)


@dataclass(frozen=True)
class Opened:
    """What the audit trail keeps of a personal value it shows: the commitment the hash chain
    binds, and the salt that proves the value against it (None once erased)."""

    commitment: str  # hex
    salt: str | None  # hex


def erased_value(field: str) -> Any:
    value = _ERASED_AS.get(field, ERASED)
    return type(value)() if isinstance(value, list | dict) else value


def _context(owner: UUID, path: str) -> bytes:
    return owner.bytes + path.encode()


def seal_fields(state: dict[str, Any], owner: UUID | None, keys: DataKeys) -> None:
    """Replaces each personal value in `state` by its sealed form, in place."""
    for field in PERSONAL_FIELDS.intersection(state):
        value = state[field]
        if value is None or isinstance(value, Sealed):
            continue
        if owner is None:
            raise ValueError(f"no owner to seal {field!r} for: it must not be stored in plain text")
        if field in _NESTED and isinstance(value, dict):
            state[field] = {
                name: item
                if item is None or isinstance(item, Sealed)
                else Sealed.of(item, owner, _context(owner, f"{field}.{name}"), keys)
                for name, item in value.items()
            }
            continue
        state[field] = Sealed.of(value, owner, _context(owner, field), keys)


def open_fields(state: dict[str, Any], keys: DataKeys) -> dict[str, Opened]:
    """Replaces each sealed value in `state` by its plain value (or the erased form once its
    owner is forgotten), in place; returns what was opened, by path."""
    opened: dict[str, Opened] = {}
    for field in PERSONAL_FIELDS.intersection(state):
        value = state[field]
        if isinstance(value, Sealed):
            state[field] = _open(value, field, field, keys, opened)
        elif field in _NESTED and isinstance(value, dict):
            state[field] = {
                name: _open(item, f"{field}.{name}", field, keys, opened)
                if isinstance(item, Sealed)
                else item
                for name, item in value.items()
            }
    return opened


def sealed_owners(state: dict[str, Any]) -> set[UUID]:
    """Whose keys open the sealed values in `state`: read from the values themselves (each
    names its owner), so a batch's keys can be fetched at once before any is opened."""
    owners: set[UUID] = set()
    for field in PERSONAL_FIELDS.intersection(state):
        value = state[field]
        if isinstance(value, Sealed):
            owners.add(value.owner)
        elif field in _NESTED and isinstance(value, dict):
            owners.update(item.owner for item in value.values() if isinstance(item, Sealed))
    return owners


def _open(sealed: Sealed, path: str, field: str, keys: DataKeys, opened: dict[str, Opened]) -> Any:
    found = sealed.open(_context(sealed.owner, path), keys)
    opened[path] = Opened(sealed.commitment.hex(), None if found is None else found[1].hex())
    return erased_value(field) if found is None else found[0]


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
        self._readers: dict[frozenset[str], Callable[[bytes], dict[str, Any]]] = {}

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
        return self._opened(super().to_domain_event(stored_event))

    def to_domain_events(
        self, stored_events: Sequence[StoredEvent], fields: Collection[str] | None = None
    ) -> list[DomainEventProtocol[UUID]]:
        """to_domain_event of each, the keys of all the owners they hold values of read at
        once (DataKeys.warm) rather than one person at a time: a projector's batch.

        With `fields`, the events hold only those of their fields (and their id, version and
        timestamp): for a reader that says what it reads (a projection), which then neither
        parses nor opens the rest (hashes, sealed tokens). Only where the store holds the
        library's plain JSON and the event's class was never upcast; elsewhere, whole events."""
        read = None if fields is None else self._fields_reader(frozenset(fields))
        events = [self._decoded(stored, read) for stored in stored_events]
        owners: set[UUID] = set()
        for event in events:
            state = vars(event)
            owners |= sealed_owners(state)
            if isinstance(event, Snapshot):
                owners |= sealed_owners(state["state"])
        if owners:
            self.keys.warm(owners)
        return [self._opened(event) for event in events]

    def _fields_reader(self, fields: frozenset[str]) -> Callable[[bytes], dict[str, Any]] | None:
        if (
            not isinstance(self.transcoder, FastJSONTranscoder)
            or self.cipher is not None
            or self.compressor is not None
        ):
            return None
        reader = self._readers.get(fields)
        if reader is None:
            reader = self._readers[fields] = self.transcoder.fields_decoder(fields | {"timestamp"})
        return reader

    def _decoded(
        self, stored: StoredEvent, read: Callable[[bytes], dict[str, Any]] | None
    ) -> DomainEventProtocol[UUID]:
        """The event unopened: whole, or (with `read`) only the fields `read` parses."""
        kind = resolve_topic(stored.topic)
        if read is None or issubclass(kind, Snapshot) or getattr(kind, "class_version", 1) != 1:
            return super().to_domain_event(stored)
        state = read(stored.state)  # what Mapper.to_domain_event does, on fewer fields
        convert = find_id_convertor(kind, cast("Hashable", type(stored.originator_id)))
        state["originator_id"] = convert(stored.originator_id)
        state["originator_version"] = stored.originator_version
        event = object.__new__(kind)
        object.__setattr__(event, "__dict__", state)
        return cast("DomainEventProtocol[UUID]", event)

    def _opened(self, event: DomainEventProtocol[UUID]) -> DomainEventProtocol[UUID]:
        state = vars(event)
        if isinstance(event, Snapshot):
            open_fields(state["state"], self.keys)
        opened = open_fields(state, self.keys)
        if opened:
            state[SEALS] = opened
        return event
