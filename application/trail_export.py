"""The audit trail as JSON Lines, each line chained to the one before it by a SHA-256 hash.

Each line is one trail entry's fields plus `prev` (the previous line's `hash`; GENESIS for the
first line) and `hash` = SHA-256 of `prev` followed by the entry's canonical JSON (sorted keys, no
whitespace, UTF-8). Editing, removing, inserting or moving a line breaks the chain at that line
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

from application.trail import TrailEntry

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
    prev = GENESIS
    for entry in entries:
        head, middle, tail = _pieces(_fields(entry))
        digest = hashlib.sha256(f"{prev}{head}{middle}{tail}".encode()).hexdigest()
        yield f'{head},"hash":"{digest}"{middle},"prev":"{prev}"{tail}'
        prev = digest


_HEAD = ("account_id", "aggregate", "aggregate_id", "details")  # the keys before "hash"
_MIDDLE = ("ip", "outcome", "position")  # between "hash" and "prev"
_TAIL = ("session_id", "time", "type", "user_agent", "version")  # after "prev"


def _pieces(fields: Mapping[str, Any]) -> tuple[str, str, str]:
    """canonical(fields) == head + middle + tail."""
    head = canonical({key: fields[key] for key in _HEAD})[:-1]
    middle = "," + canonical({key: fields[key] for key in _MIDDLE})[1:-1]
    tail = "," + canonical({key: fields[key] for key in _TAIL})[1:]
    return head, middle, tail


def _fields(entry: TrailEntry) -> dict[str, Any]:
    """What json_ready(entry) makes, written out: the export's hot loop (details are already
    plain JSON values, see trail.py)."""
    return {
        "position": entry.position,
        "time": entry.time.isoformat(),
        "type": entry.type,
        "aggregate": entry.aggregate,
        "aggregate_id": str(entry.aggregate_id),
        "version": entry.version,
        "account_id": None if entry.account_id is None else str(entry.account_id),
        "session_id": None if entry.session_id is None else str(entry.session_id),
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "outcome": entry.outcome,
        "details": entry.details,
    }


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
    if link(prev, fields) != claimed_hash:
        return "hash does not match the line's content: the line was edited", prev
    return None, claimed_hash
