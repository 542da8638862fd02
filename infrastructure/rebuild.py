"""Replaying every event into an emptied read model: `tessera projector rebuild NAME`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventsourcing.application import Application

from infrastructure.projector import Projector
from infrastructure.read_store import ReadStoreStatements

REBUILD_BATCH = 2000  # events a transaction


def rebuild(
    app: Application[Any],
    projector: Projector,
    advance: Callable[[int], None] = lambda read: None,
    batch_size: int = REBUILD_BATCH,
) -> int:
    """Empties the projector's read model and replays the whole log into it; returns how many
    events it read. The caller holds the projection's lease, so nothing else writes meanwhile.

    The read model's secondary indexes are dropped with its rows and created once at the end,
    each in one sort: the replay writes bare rows. Killed midway, the read model is left as a
    killed projector leaves it (whole batches, each with its position) but without those
    indexes, until the next start of its store or the next rebuild creates them. Rows of the
    append-only tables are appended, not upserted (ReadStoreStatements.appending).
    """
    view = projector.projection.view
    if not isinstance(view, ReadStoreStatements):
        raise TypeError(f"{projector.name} has no read model to rebuild")
    view.reset(app.name, drop_indexes=True)
    # Larger batches than the live projector's: fewer round trips, and no one waits for the
    # first rows of a rebuild.
    replaying = Projector(app, projector.projection, projector.lease, batch_size)
    events = 0
    with view.appending():
        while read := replaying.run_once():
            events += read
            advance(read)
    view.create_indexes()
    return events
