"""The audit trail as JSON Lines, each line chained to the one before it by a SHA-256 hash.

Each line is one trail entry's fields plus `prev` (the previous line's `hash`; GENESIS for the
first line) and `hash` = SHA-256 of `prev` followed by the entry's canonical JSON (sorted keys, no
whitespace, UTF-8). A line that shows personal values has `sealed`: for each, its path in the
line ("ip", "details.email") and its commitment in the store, SHA-256(salt || the value's
canonical JSON); and, while the person is not erased, `salts`: each value's salt (hex). The hash
is taken over the line without `salts`, each of those values replaced by its commitment; and
each value shown with a salt must match its commitment. Erasure changes the values (they read
"[erased]") and drops the salts, but not the commitments, so a line exported before and after it
has the same hash, and a value cannot be edited while its salt is shown. Editing, removing, inserting or moving a line breaks the chain at that line
or the next one. The chain proves the file is whole and in order relative to its last hash: keep
that hash somewhere else (a ticket, a signed note), since anyone can compute a fresh chain over an
altered file, and cutting lines off the end leaves a shorter chain that still verifies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from application.audit.trail import TrailEntry

GENESIS = "0" * 64  # the `prev` of a chain's first line


# msgspec writes the same text as json.dumps(sort_keys=True, separators=(",", ":"),
# ensure_ascii=False) for every value a trail line holds (strings, integers, null, objects; a test
# compares them over every code point), several times faster: exports made before still verify.
_CANONICAL = msgspec.json.Encoder(order="sorted")


def canonical(fields: Mapping[str, Any]) -> str:
    return _CANONICAL.encode(fields).decode()


def link(prev: str, fields: Mapping[str, Any]) -> str:
    """The hash of an entry whose predecessor's hash is `prev`."""
    return hashlib.sha256(f"{prev}{canonical(fields)}".encode()).hexdigest()


def chained(entries: Iterable[TrailEntry]) -> Iterator[str]:
    """One line (without its newline) per entry, lazily: the chain never holds the trail.

    Each value is serialised once: the entry's canonical JSON is made in three pieces, split
    where `hash` and `prev` fall in sorted key order, so the hashed text and the line (the same
    canonical JSON with the two added) are both joined from them."""
    prev = GENESIS.encode()
    for entry in entries:
        if entry.sealed:
            fields = _fields(entry)
            digest_text = link(prev.decode(), committed(fields))
            yield canonical({**fields, "hash": digest_text, "prev": prev.decode()})
            prev = digest_text.encode()
            continue
        head, middle, tail = _pieces(entry)
        digest = hashlib.sha256(prev + head + middle + tail).hexdigest().encode()
        yield (
            head + b',"hash":"' + digest + b'"' + middle + b',"prev":"' + prev + b'"' + tail
        ).decode()
        prev = digest


def _fields(entry: TrailEntry) -> dict[str, Any]:
    fields = {
        "account_id": None if entry.account_id is None else str(entry.account_id),
        "aggregate": entry.aggregate,
        "aggregate_id": str(entry.aggregate_id),
        "details": entry.details,
        "ip": entry.ip,
        "outcome": entry.outcome,
        "position": entry.position,
        "sealed": entry.sealed,
        "session_id": None if entry.session_id is None else str(entry.session_id),
        "time": entry.time.isoformat(),
        "type": entry.type,
        "user_agent": entry.user_agent,
        "version": entry.version,
    }
    if entry.salts:
        fields["salts"] = entry.salts
    return fields


def committed(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What a line's hash is taken over: its fields but `salts`, each sealed value replaced by
    the commitment `sealed` names for it."""
    found = dict(fields)
    found.pop("salts", None)
    sealed = found.get("sealed")
    if not isinstance(sealed, dict):
        return found
    if isinstance(found.get("details"), dict):
        found["details"] = dict(found["details"])
    for path, digest in sealed.items():
        *parents, name = str(path).split(".")
        target = found
        for parent in parents:
            target = target[parent] if isinstance(target.get(parent), dict) else {}
        if name in target:
            target[name] = digest
    return found


def _pieces(entry: TrailEntry) -> tuple[bytes, bytes, bytes]:
    """canonical(fields(entry)) == head + middle + tail, split before "hash" and "prev"."""
    encode = _CANONICAL.encode
    head = encode(
        {
            "account_id": None if entry.account_id is None else str(entry.account_id),
            "aggregate": entry.aggregate,
            "aggregate_id": str(entry.aggregate_id),
            "details": entry.details,  # plain JSON values already (see trail.py)
        }
    )[:-1]
    middle = encode({"ip": entry.ip, "outcome": entry.outcome, "position": entry.position})
    tail = encode(
        {
            "session_id": None if entry.session_id is None else str(entry.session_id),
            "time": entry.time.isoformat(),
            "type": entry.type,
            "user_agent": entry.user_agent,
            "version": entry.version,
        }
    )
    return head, b"," + middle[1:-1], b"," + tail[1:]


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    lines: int  # lines read: all of them when ok, else up to and including the bad one
    last_hash: str  # the hash of the last good line (GENESIS for none): compare it to a kept one
    bad_line: int | None = None  # 1-based
    reason: str | None = None


def verify(lines: Iterable[str]) -> VerifyResult:
    """Checks a chain line by line, in constant memory; stops at the first bad line."""
    prev = GENESIS
    count = 0
    for count, line in enumerate(lines, start=1):
        fault, digest = _follow(line.rstrip("\r\n"), prev)
        if fault is not None:
            return VerifyResult(False, count, prev, bad_line=count, reason=fault)
        prev = digest
    return VerifyResult(True, count, prev)


def _follow(line: str, prev: str) -> tuple[str | None, str]:
    """(why this line does not follow a line hashed `prev`, or None; this line's hash)."""
    try:
        fields = json.loads(line)
    except ValueError:
        return "not JSON", prev
    if not isinstance(fields, dict):
        return "not a JSON object", prev
    claimed_prev = fields.pop("prev", None)
    claimed_hash = fields.pop("hash", None)
    if not isinstance(claimed_prev, str) or not isinstance(claimed_hash, str):
        return "no prev or hash field", prev
    if claimed_prev != prev:
        return (
            "prev does not match the previous line's hash: "
            "a line was removed, inserted, moved or re-hashed before this one",
            prev,
        )
    if not _salted_values_match(fields):
        return "a personal value does not match its commitment: the line was edited", prev
    if link(prev, committed(fields)) != claimed_hash:
        return "hash does not match the line's content: the line was edited", prev
    return None, claimed_hash


def _salted_values_match(fields: Mapping[str, Any]) -> bool:
    """Each value shown with a salt is the one its commitment was made of."""
    salts, sealed = fields.get("salts") or {}, fields.get("sealed") or {}
    if not isinstance(salts, dict) or not isinstance(sealed, dict):
        return False
    for path, salt in salts.items():
        *parents, name = str(path).split(".")
        target: Any = fields
        for parent in parents:
            target = target.get(parent) if isinstance(target, dict) else None
        if not isinstance(target, dict) or name not in target or path not in sealed:
            return False
        try:
            made = hashlib.sha256(bytes.fromhex(str(salt)) + _CANONICAL.encode(target[name]))
        except ValueError:
            return False
        if made.hexdigest() != sealed[path]:
            return False
    return True
