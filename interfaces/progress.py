"""Progress of the long commands (rebuild, replay, export, seeding) on a terminal, drawn by rich:
what is done, the rate, the time left. Nothing is drawn when stderr is not a terminal, so logs,
pipes and tests stay clean."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]  # told how many more are done


@contextmanager
def progress(description: str, total: int | None, unit: str) -> Iterator[Advance]:
    """`total`: how many there will be (None: unknown, no time left shown)."""
    if not sys.stderr.isatty():
        yield lambda done: None
        return
    # Imported here: commands that draw nothing do not pay for it.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            # rich's own speed needs two samples; a short run has one: its average then.
            speed = task.finished_speed or task.speed
            if speed is None and task.elapsed:
                speed = task.completed / task.elapsed
            return Text("" if speed is None else f"{speed:,.0f} {unit}/s")

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.advance(task, done)
