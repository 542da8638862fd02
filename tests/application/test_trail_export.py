"""The exported trail's hash chain: any edit, removal, insertion or move is found, and where."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from application.audit.trail import TrailEntry
from application.audit.trail_export import GENESIS, chained, link, verify

ACCOUNT = uuid4()
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def entries(n: int = 5) -> list[TrailEntry]:
    return [
        TrailEntry(
            position=i,
            time=T0 + timedelta(seconds=i),
            type="LoginFailed",
            aggregate="Account",
            aggregate_id=ACCOUNT,
            version=i,
            account_id=ACCOUNT,
            session_id=None,
            ip="203.0.113.7",
            user_agent="curl/8 ünïcode",
            outcome="failure",
            details={"factor": "password"},
        )
        for i in range(1, n + 1)
    ]


@pytest.fixture
def lines() -> list[str]:
    return list(chained(entries()))


def test_a_chain_verifies_and_reports_its_last_hash(lines: list[str]) -> None:
    result = verify(lines)
    assert (result.ok, result.lines, result.bad_line) == (True, 5, None)
    assert result.last_hash == json.loads(lines[-1])["hash"]


def test_each_line_is_the_entry_plus_prev_and_a_hash_over_prev_and_its_canonical_json(
    lines: list[str],
) -> None:
    first, second = json.loads(lines[0]), json.loads(lines[1])
    assert first["prev"] == GENESIS
    assert second["prev"] == first["hash"]
    fields = {k: v for k, v in first.items() if k not in ("prev", "hash")}
    assert fields["position"] == 1 and fields["account_id"] == str(ACCOUNT)
    assert first["hash"] == link(GENESIS, fields)
    # Canonical: sorted keys, no spaces, UTF-8 as is.
    assert lines[0] == json.dumps(first, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_an_edited_line_fails_at_that_line(lines: list[str]) -> None:
    lines[2] = lines[2].replace("203.0.113.7", "198.51.100.1")
    result = verify(lines)
    assert (result.ok, result.bad_line) == (False, 3)
    assert result.reason is not None and "edited" in result.reason


def test_a_removed_line_fails_at_the_line_that_followed_it(lines: list[str]) -> None:
    del lines[1]
    result = verify(lines)
    assert (result.ok, result.bad_line) == (False, 2)
    assert result.reason is not None and "prev" in result.reason


def test_a_swapped_pair_fails_at_the_first_of_them(lines: list[str]) -> None:
    lines[1], lines[2] = lines[2], lines[1]
    assert verify(lines).bad_line == 2


def test_an_inserted_line_fails_even_when_its_own_hash_was_recomputed(lines: list[str]) -> None:
    copied = json.loads(lines[1])
    assert verify([*lines[:2], lines[1], *lines[2:]]).bad_line == 3
    forged = {k: v for k, v in copied.items() if k not in ("prev", "hash")}
    forged["details"] = {"factor": "totp"}
    forged_hash = link(copied["hash"], forged)
    forged_line = json.dumps({**forged, "prev": copied["hash"], "hash": forged_hash})
    assert verify([*lines[:2], forged_line, *lines[2:]]).bad_line == 4


def test_lines_that_are_not_chain_links_are_named(lines: list[str]) -> None:
    assert verify([lines[0], "not json"]).reason == "not JSON"
    assert verify([lines[0], "[1, 2]"]).reason == "not a JSON object"
    assert verify([lines[0], "{}"]).reason == "no prev or hash field"
    assert verify([lines[0], ""]).bad_line == 2


def test_cutting_lines_off_the_end_is_seen_only_in_the_last_hash(lines: list[str]) -> None:
    whole, cut = verify(lines), verify(lines[:-1])
    assert cut.ok and cut.lines == 4
    assert (
        cut.last_hash != whole.last_hash
    )  # why docs/audit/verifying.md says: keep the last hash elsewhere


def test_line_ends_do_not_matter_but_an_empty_file_is_an_empty_chain(lines: list[str]) -> None:
    assert verify(line + "\r\n" for line in lines).ok
    empty = verify([])
    assert (empty.ok, empty.lines, empty.last_hash) == (True, 0, GENESIS)


def test_the_export_s_fields_are_the_entry_as_json_ready_makes_it() -> None:
    """The hot loop writes the fields out by hand; they must stay what json_ready makes."""
    from dataclasses import fields as dataclass_fields
    from datetime import UTC, datetime
    from uuid import uuid4

    from application.audit.trail import TrailEntry
    from application.views import json_ready

    entry = TrailEntry(
        position=7,
        time=datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
        type="LoginFailed",
        aggregate="Account",
        aggregate_id=uuid4(),
        version=3,
        account_id=uuid4(),
        session_id=None,
        ip="192.0.2.1",
        user_agent="ü agent",
        outcome="failure",
        details={"factor": "password", "until": "2026-01-01T12:15:00+00:00"},
    )
    line = json.loads(next(chained([entry])))
    written = {k: v for k, v in line.items() if k not in ("prev", "hash")}
    # `sealed` only on a line with personal values: lines without are as they always were.
    assert written == {k: v for k, v in json_ready(entry).items() if k not in ("sealed", "salts")}
    assert set(written) == {f.name for f in dataclass_fields(TrailEntry)} - {"sealed", "salts"}


def test_a_line_holds_every_field_of_its_entry_and_hashes_their_canonical_json() -> None:
    from dataclasses import fields

    (entry,) = entries(1)
    line = json.loads(next(chained([entry])))
    shown = {k: v for k, v in line.items() if k not in ("prev", "hash")}
    assert set(shown) == {f.name for f in fields(TrailEntry)} - {"sealed", "salts"}
    assert line["hash"] == link(GENESIS, shown)
    assert shown["time"] == entry.time.isoformat() and shown["details"] == entry.details


def test_canonical_json_is_json_dumps_text_for_every_code_point() -> None:
    """Lines are written with msgspec; exports made with json.dumps must still verify."""
    from application.audit.trail_export import canonical

    points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    for start in range(0, len(points), 4096):
        text = "".join(map(chr, points[start : start + 4096]))
        fields = {"z": text, "a": [1, None, True, {"y": -(2**70), "b": text[:9]}], "m": ""}
        expected = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert canonical(fields) == expected


def _committed(value: str) -> tuple[str, str]:
    """(salt, commitment) as the store makes them: SHA-256 of the salt and the value's JSON."""
    salt = os.urandom(16)
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return salt.hex(), hashlib.sha256(salt + text).hexdigest()


def test_a_line_with_personal_values_hashes_their_seals_so_erasure_keeps_its_hash() -> None:
    values = {"ip": "192.0.2.1", "user_agent": "Erasable-Phöne/7.1", "details.email": "ada@ex.org"}
    made = {path: _committed(value) for path, value in values.items()}
    entry = TrailEntry(
        position=9,
        time=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
        type="Registered",
        aggregate="Account",
        aggregate_id=uuid4(),
        version=1,
        account_id=uuid4(),
        session_id=None,
        ip=values["ip"],
        user_agent=values["user_agent"],
        outcome="success",
        details={"email": values["details.email"], "username": "countess_ada"},
        sealed={path: commitment for path, (_, commitment) in made.items()},
        salts={path: salt for path, (salt, _) in made.items()},
    )
    before = list(chained([entry, entry]))
    after = list(chained([entry.erased(), entry.erased()]))
    assert [json.loads(line)["hash"] for line in before] == [
        json.loads(line)["hash"] for line in after
    ]
    assert verify(before).ok and verify(after).ok
    erased = json.loads(after[0])
    assert (erased["ip"], erased["details"]["email"]) == ("[erased]", "[erased]")
    assert "salts" not in erased and erased["details"]["username"] == "countess_ada"
    # The chain binds everything else and the commitments; a value shown with its salt is
    # bound too, so an edited address fails.
    edits: list[tuple[str, Any]] = [
        ("outcome", "failure"),
        ("sealed", {**entry.sealed, "ip": "d" * 64}),
        ("ip", "192.0.2.99"),
        ("details", {**entry.details, "email": "eve@ex.org"}),
    ]
    for name, value in edits:
        line = json.loads(before[0])
        line[name] = value
        assert not verify([json.dumps(line), before[1]]).ok, name
    # An auditor's few lines, in plain Python: check each salted value, substitute the
    # commitments, hash the canonical JSON.
    for lines in (before, after):
        prev = GENESIS
        for text in lines:
            fields = json.loads(text)
            claimed, fields_prev = fields.pop("hash"), fields.pop("prev")
            salts = fields.pop("salts", {})
            for path, commitment in fields["sealed"].items():
                *parents, name = path.split(".")
                target = fields
                for parent in parents:
                    target = target[parent]
                if path in salts:
                    shown = json.dumps(target[name], ensure_ascii=False, separators=(",", ":"))
                    assert (
                        hashlib.sha256(bytes.fromhex(salts[path]) + shown.encode()).hexdigest()
                        == commitment
                    )
                target[name] = commitment
            canonical_text = json.dumps(
                fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            )
            assert fields_prev == prev
            assert hashlib.sha256((prev + canonical_text).encode()).hexdigest() == claimed
            prev = claimed
