"""Reading ahead in a thread (application.read_ahead) changes when batches are read, never what
the caller sees: the same batches in the same order, the reader's error where its batch would
have been, and no more than `depth` batches held beyond the one in hand."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from application.read_ahead import read_ahead


def test_the_batches_come_in_order_and_all_of_them() -> None:
    batches = ([n, n + 1] for n in range(0, 2000, 2))
    assert list(read_ahead(batches, depth=3)) == [[n, n + 1] for n in range(0, 2000, 2)]


def test_an_error_of_the_reader_is_raised_where_its_batch_would_be() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("the store went away")

    seen = []
    with pytest.raises(RuntimeError, match="went away"):
        for batch in read_ahead(failing()):
            seen.append(batch)
    assert seen == [1, 2]


def test_the_reader_stays_at_most_depth_batches_ahead_and_stops_when_the_caller_does() -> None:
    read: list[int] = []

    def counted() -> Iterator[int]:
        for n in range(100):
            read.append(n)
            yield n

    ahead = read_ahead(counted(), depth=2)
    assert next(ahead) == 0
    time.sleep(0.3)  # the reader fills what it may meanwhile
    # The one in hand, two queued, and one read but waiting for room.
    assert 1 <= len(read) <= 4
    ahead.close()  # the caller stops early (a closed pipe): the reader ends too
    assert len(read) <= 4
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())
