"""The event store a migration copies from (`tessera migrate`), opened to be read only."""

from __future__ import annotations

from pathlib import Path

from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory, TrackingRecorder
from eventsourcing.utils import Environment

from application.persistence.event_log import EventLog
from infrastructure.persistence import Database


def open_source(url: str | None, data_dir: Path | None) -> ApplicationRecorder:
    """The old store's event recorder: PostgreSQL at `url`, or DATA_DIR's SQLite file.

    No table is created (a mistyped path must not leave an empty store behind), and the
    library's own recorder reads it: the source is not written while it is copied, so the
    concurrent recorder's care for transactions still running is not needed, and a store
    older than its column reads too.
    """
    if url is None:
        assert data_dir is not None
        path = data_dir / "tessera.sqlite"
        if not path.is_file():
            raise FileNotFoundError(f"no event store at {path}")
        env = Database(url=None, sqlite_path=path).eventsourcing_env()
    else:
        env = Database(url=url, sqlite_path=Path()).eventsourcing_env()
        env.pop("APPLICATION_RECORDER_TOPIC", None)
    env["CREATE_TABLE"] = "n"
    # Named as the service's application: on PostgreSQL the table is named after it.
    factory = InfrastructureFactory[TrackingRecorder].construct(Environment(EventLog.name, env))
    return factory.application_recorder()
