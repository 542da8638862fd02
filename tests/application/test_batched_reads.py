"""The read side's faster paths read exactly what the plain ones do: a batch decoded with every
person's key read at once (DataKeys.warm), events decoded to the fields a projection names, and
the audit row's details made by msgspec where it writes what json does."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from application.persistence.sealing import SEALS, SealingMapper
from application.ports import Erased
from application.read_side.read_models import AccountsProjection, AuditProjection, _details
from domain.account import ERASED
from infrastructure.data_keys import SqliteDataKeyTable, WrappedDataKeys
from infrastructure.keyring import Keyring
from interfaces.container import Container
from tests.application.test_history import everything
from tests.conftest import FakeClock


def _whole_and_batched(
    container: Container, fields: frozenset[str] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    mapper = container.log.mapper
    assert isinstance(mapper, SealingMapper)
    stored = container.log.recorder.select_notifications(start=1, limit=10_000)
    whole = [dict(vars(mapper.to_domain_event(n))) for n in stored]
    batched = [dict(vars(event)) for event in mapper.to_domain_events(stored, fields)]
    return whole, batched


def test_a_batch_decodes_as_each_event_alone(container: Container, clock: FakeClock) -> None:
    everything(container, clock)
    whole, batched = _whole_and_batched(container, None)
    assert batched == whole


def test_a_projection_sees_the_fields_it_names_as_the_whole_event_has_them(
    container: Container, clock: FakeClock
) -> None:
    everything(container, clock)
    container.erasure.erase(str(container.log.account_for_login("bob").id), "cli:root")  # type: ignore[union-attr]
    for projection in (AccountsProjection, AuditProjection):
        assert projection.fields is not None
        whole, partial = _whole_and_batched(container, projection.fields)
        for full, part in zip(whole, partial, strict=True):
            kept = projection.fields | {"timestamp", "originator_id", "originator_version"}
            expected = {k: v for k, v in full.items() if k in kept}
            opened = full.get(SEALS, {})
            seals = {p: o for p, o in opened.items() if p.split(".")[0] in kept}
            if seals:
                expected[SEALS] = seals
            assert part == expected


def test_warmed_keys_open_what_keys_read_one_by_one_open(tmp_path: Path) -> None:
    secret = Keyring(os.urandom(32))
    table = SqliteDataKeyTable(tmp_path / "keys.sqlite")
    sealing = WrappedDataKeys(secret, table)
    owners = [uuid4() for _ in range(600)]  # more than one query's worth of keys
    sealed = {owner: sealing.seal(owner, b"email", owner.bytes) for owner in owners}
    sealing.forget(Erased(owners[0], datetime.now(UTC)))
    never = uuid4()  # nothing sealed for it: no key at all
    reader = WrappedDataKeys(secret, table)
    reader.warm([*owners, never])
    assert reader.open(owners[0], b"email", sealed[owners[0]]) is None
    for owner in owners[1:]:
        assert reader.open(owner, b"email", sealed[owner]) == owner.bytes
    assert reader.open(never, b"email", b"x" * 40) is None
    table.close()


def test_details_are_written_as_json_writes_them() -> None:
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
    for code in range(0x110000):
        if 0xD800 <= code < 0xE000:
            continue
        details: dict[str, Any] = {"email": f"a{chr(code)}b", "role": None, "n": 3, "on": True}
        assert _details(details) == encoder.encode(details), hex(code)
    for odd in ({"until": 1e16}, {"x": [1, 2]}, {"reason": ERASED}, {}):
        assert _details(odd) == encoder.encode(odd)
