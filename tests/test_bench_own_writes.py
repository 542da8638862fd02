"""The own-writes scenario refuses a read that claims to be caught up but does not show the
write: its figures would otherwise time reads that never waited for anything."""

from __future__ import annotations

import httpx
import pytest

from bench.config import load_config
from bench.own_writes import ACTIVITY, READ_BEHIND, _shows_write


def _activity(behind: int, entry: dict[str, object]) -> httpx.Response:
    return httpx.Response(
        200,
        headers={READ_BEHIND: str(behind)},
        json={"entries": [entry], "next_cursor": None},
        request=httpx.Request("GET", f"http://127.0.0.1{ACTIVITY}"),
    )


def test_a_caught_up_read_showing_a_newer_profile_update_passes() -> None:
    answer = _activity(0, {"type": "ProfileUpdated", "position": 42})
    assert _shows_write(answer, last_position=41) == 42


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "ProfileUpdated", "position": 41},  # the previous round's write, not this one
        {"type": "SessionStarted", "position": 43},
    ],
)
def test_a_caught_up_read_that_does_not_show_the_write_fails_the_run(
    entry: dict[str, object],
) -> None:
    with pytest.raises(AssertionError, match="not shown"):
        _shows_write(_activity(0, entry), last_position=41)


def test_a_read_that_timed_out_is_counted_not_checked() -> None:
    answer = _activity(3, {"type": "SessionStarted", "position": 40})
    assert _shows_write(answer, last_position=41) == 41


def test_the_scenario_is_on_by_default_and_can_be_switched_off() -> None:
    assert load_config({}).own_writes
    assert not load_config({"BENCH_OWN_WRITES": "0"}).own_writes
    assert load_config({"BENCH_OWN_WRITES_USERS": "8"}).own_writes_users == 8
