"""Replaying every event into an emptied read model: `tessera projector rebuild NAME`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.sql import SQL, Identifier

from application.persistence.event_log import EventLog, LogHeldBack
from infrastructure.projector import Projector
from infrastructure.read_store import ReadStoreStatements

REBUILD_BATCH = 2000  # events a transaction


@dataclass(frozen=True)
class Rebuilt:
    events: int  # how many the replay read
    recorded: int  # how many the log holds up to `end`
    end: int  # the log's last position when the replay began

    @property
    def whole(self) -> bool:
        return self.events == self.recorded


def rebuild(
    log: EventLog,
    projector: Projector,
    advance: Callable[[int], None] = lambda read: None,
    batch_size: int = REBUILD_BATCH,
) -> Rebuilt:
    """Empties the projector's read model and replays the whole log into it, to the log's end
    as it was when the replay began (LogHeldBack if something holds an event back, never a
    shorter replay); says how many events it read against how many the log holds. The caller
    holds the projection's lease, so nothing else writes meanwhile.

    The read model's secondary indexes are dropped with its rows and created once at the end,
    each in one sort: the replay writes bare rows. Killed midway, the read model is left as a
    killed projector leaves it (whole batches, each with its position) but without those
    indexes, until the next start of its store or the next rebuild creates them. Rows of the
    append-only tables are appended, not upserted (ReadStoreStatements.appending).
    """
    view = projector.projection.view
    if not isinstance(view, ReadStoreStatements):
        raise TypeError(f"{projector.name} has no read model to rebuild")
    # Larger batches than the live projector's: fewer round trips, and no one waits for the
    # first rows of a rebuild.
    end = log.end()
    view.reset(log.name, drop_indexes=True)
    replaying = Projector(log, projector.projection, projector.lease, batch_size)
    events = 0
    with view.appending():
        while replaying.position < end:
            read = replaying.run_once()
            if not read:
                raise LogHeldBack(replaying.position, end)
            events += read
            advance(read)
    view.create_indexes()
    return Rebuilt(events, recorded_count(log, end), end)


def recorded_count(log: EventLog, end: int) -> int:
    """How many events the log holds up to position `end` (positions have gaps: a save rolled
    back leaves one)."""
    recorder = log.recorder
    if isinstance(recorder, PostgresApplicationRecorder):
        statement = SQL("SELECT count(*) AS n FROM {} WHERE notification_id <= %s").format(
            Identifier(recorder.events_table_name)
        )
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(statement, (end,))
            row = curs.fetchone()
        return int(row["n"]) if row else 0
    assert isinstance(recorder, SQLiteApplicationRecorder)
    with recorder.datastore.transaction(commit=False) as c:
        c.execute(
            f"SELECT count(*) FROM {recorder.events_table_name} WHERE rowid <= ?",  # noqa: S608
            (end,),
        )
        return int(c.fetchone()[0])
