"""The faster decoder reads every stored state exactly as the library's JSON transcoder does."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import JSONTranscoder
from hypothesis import given
from hypothesis import strategies as st

from application.persistence.transcoding import FastJSONTranscoder


def _registered(transcoder: JSONTranscoder) -> JSONTranscoder:
    Application.register_transcodings(None, transcoder)  # type: ignore[arg-type]
    return transcoder


LIBRARY = _registered(JSONTranscoder())
FAST = _registered(FastJSONTranscoder())

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.uuids()
    | st.datetimes(timezones=st.just(UTC))
    | st.decimals(allow_nan=False, allow_infinity=False)
)
states = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), states, max_size=6))
def test_any_state_decodes_as_the_library_decodes_it(state: dict[str, Any]) -> None:
    stored = LIBRARY.encode(state)
    assert FAST.decode(stored) == LIBRARY.decode(stored)


def test_values_come_back_typed_and_what_msgspec_refuses_takes_the_library_s_path() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ident = UUID(int=7)
    state = {"at": at, "ids": [ident, {"nested": Decimal("1.5")}], "ratio": float("nan")}
    decoded = FAST.decode(LIBRARY.encode(state))
    assert decoded["at"] == at and decoded["ids"][0] == ident
    assert decoded["ids"][1] == {"nested": Decimal("1.5")}
    assert decoded["ratio"] != decoded["ratio"]  # NaN, which msgspec does not parse
