"""Reading the next batch of the store while the one in hand is being worked on.

A long read (a rebuild, an export) alternates between waiting on the database for a batch and
working through it in Python; with the next read already under way in a thread, the wait mostly
overlaps the work (the driver releases the GIL while it waits). At most `depth` batches are read
ahead, so memory stays flat however long the store.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """The same batches in the same order, each read while the caller works on the one before.
    An error of the reader is raised where its batch would have been yielded; stopping early
    (closing this generator) stops the reader after the batch it is reading."""
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as error:  # handed to the caller, raised in its thread
            put(_Failed(error))
            return
        put(_DONE)

    reader = threading.Thread(target=read, name="read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        reader.join()
