"""The rows a batch of events changes, folded in memory and written in one transaction.

A projection applies many events per transaction: each event's changes are folded into the rows
they touch as the batch holds them, so an event sees what the events before it in the same batch
did, exactly as if each had been committed on its own; the batch then writes each touched row
once, with the tracking record of the batch's last event. Rows are read from the store only
when a change needs a column the batch does not know yet, and in bulk where a projection can
say beforehand which rows it will touch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventsourcing.persistence import Tracking

Row = dict[str, Any]


@dataclass(frozen=True)
class Upsert:
    """Insert the row, or overwrite the columns given if its key exists."""

    table: str
    row: Row


@dataclass(frozen=True)
class Update:
    """Set `values` on the row whose columns equal `where` (none, if there is none). `where`
    names the row's key, and may add conditions on other columns."""

    table: str
    where: Row
    values: Row


Change = Upsert | Update


@dataclass(frozen=True)
class Forget:
    """What a person's erasure does to a table: delete the rows whose columns equal `where`,
    or, with `rewrite`, replace each such row by what it makes of it."""

    table: str
    where: Row
    rewrite: Callable[[Row], Row] | None = None


class ReadStore(Protocol):
    """A projection's tables and its tracking record, in one database."""

    def key(self, table: str) -> str:
        """The table's key column."""
        ...

    def rows(self, table: str, where: Row) -> list[Row]:
        """Rows whose columns equal `where` (None: IS NULL)."""
        ...

    def rows_keyed(self, table: str, keys: Collection[Any]) -> list[Row]:
        """The rows with these keys (those that exist)."""
        ...

    def write(
        self, rows: Mapping[str, Sequence[Row]], tracking: Tracking, forgets: Sequence[Forget] = ()
    ) -> None:
        """Upserts each row (the columns it has, by its table's key), then applies `forgets`,
        and records `tracking`, in one transaction. After forgets, leaves no copy of what they
        removed in the store's files (SQLite: free pages, the write-ahead log)."""
        ...

    def reset(self, application_name: str) -> None:
        """Deletes every row and the tracking record of events from `application_name`: the
        next event applied is the first."""
        ...


def _matches(row: Row, where: Row) -> bool:
    return all(row.get(column) == value for column, value in where.items())


class Batch:
    """One batch's rows, as its events so far have left them."""

    def __init__(self, store: ReadStore) -> None:
        self._store = store
        # Per table: key -> the row as the batch stands. A row is whole once its stored state
        # has been merged in (its key is in _fetched); until then it holds only the columns
        # upserted in this batch, which is all an upsert needs to write.
        self._rows: dict[str, dict[Any, Row]] = {}
        self._fetched: dict[str, set[Any]] = {}
        self._dirty: dict[str, dict[Any, None]] = {}  # an ordered set: rows to write
        self._forgets: list[Forget] = []

    def load(self, table: str, keys: Collection[Any]) -> None:
        """Reads the rows with these keys from the store at once, ahead of the changes that
        will need them (one query instead of one a row)."""
        fetched = self._fetched.setdefault(table, set())
        missing = [key for key in dict.fromkeys(keys) if key not in fetched]
        if not missing:
            return
        rows = self._rows.setdefault(table, {})
        column = self._store.key(table)
        for stored in self._store.rows_keyed(table, missing):
            key = stored[column]
            rows[key] = {**stored, **rows.get(key, {})}  # this batch's upserts win
        fetched.update(missing)

    def get(self, table: str, key: Any) -> Row | None:
        """The row with this key as the batch stands, None if there is none."""
        self.load(table, [key])
        return self._rows.get(table, {}).get(key)

    def select(self, table: str, where: Row) -> list[Row]:
        """The rows whose columns equal `where` as the batch stands."""
        column = self._store.key(table)
        self.load(table, [row[column] for row in self._store.rows(table, where)])
        rows = self._rows.get(table, {})
        partial = [key for key, row in rows.items() if not where.keys() <= row.keys()]
        self.load(table, partial)
        return [dict(row) for row in rows.values() if _matches(row, where)]

    def apply(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if isinstance(change, Upsert):
                self._upsert(change.table, change.row)
            else:
                self._update(change.table, change.where, change.values)

    def _upsert(self, table: str, row: Row) -> None:
        key = row[self._store.key(table)]
        rows = self._rows.setdefault(table, {})
        rows[key] = {**rows.get(key, {}), **row}
        self._dirty.setdefault(table, {})[key] = None

    def _update(self, table: str, where: Row, values: Row) -> None:
        column = self._store.key(table)
        if column not in where:
            raise ValueError(f"an update names the row it changes by its key ({column})")
        key = where[column]
        row = self._rows.get(table, {}).get(key)
        if row is None or not where.keys() <= row.keys():
            row = self.get(table, key)
        if row is None or not _matches(row, where):
            return
        row.update(values)
        self._dirty.setdefault(table, {})[key] = None

    def forget(self, forgets: Sequence[Forget]) -> None:
        """Applied when the batch commits, after its rows are written: so they reach the rows
        this batch wrote too, and any a later event of the batch wrote after the erasure."""
        self._forgets.extend(forgets)

    def commit(self, tracking: Tracking) -> None:
        """Writes every row the batch changed, and `tracking`, in one transaction."""
        written = {
            table: [self._rows[table][key] for key in keys] for table, keys in self._dirty.items()
        }
        self._store.write(written, tracking, self._forgets)
