"""What a run found: one Figure per measurement, each next to the limit it is judged against,
printed as a table and written as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    scenario: str
    backend: str
    value: float | None  # per second, or milliseconds for latency-only figures
    unit: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    limit_name: str = ""  # what the figure is divided by, measured in the same run
    limit: float | None = None
    ratio: float | None = None
    target: str = ""  # e.g. ">= 0.95"
    met: bool | None = None
    note: str = ""
    load: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    meta: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(f"  {_line(figure)}", flush=True)
        return figure

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {**self.meta, "figures": [asdict(f) for f in self.figures]}
        path.write_text(json.dumps(data, indent=2) + "\n")

    def table(self) -> str:
        header = ("scenario", "backend", "figure", "p50 ms", "p99 ms", "limit", "ratio", "target")
        rows = [header] + [_row(f) for f in self.figures]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = [
            "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows
        ]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        notes = [f"- {f.scenario} ({f.backend}): {f.note}" for f in self.figures if f.note]
        return "\n".join(lines + (["", *notes] if notes else []))


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _row(f: Figure) -> tuple[str, ...]:
    figure = "skipped" if f.value is None else f"{_number(f.value)} {f.unit}"
    limit = f"{_number(f.limit)} ({f.limit_name})" if f.limit is not None else f.limit_name
    verdict = {True: " ok", False: " MISSED", None: ""}[f.met]
    return (
        f.scenario,
        f.backend,
        figure,
        _number(f.p50_ms, 2),
        _number(f.p99_ms, 2),
        limit,
        _number(f.ratio, 2),
        f"{f.target}{verdict}",
    )


def _line(f: Figure) -> str:
    cells = _row(f)
    return f"{cells[0]} [{cells[1]}]: {cells[2]}, p50 {cells[3]} ms, p99 {cells[4]} ms" + (
        f"; ratio {cells[6]} to {cells[5]} (target {cells[7].strip()})"
        if f.ratio is not None
        else ""
    )
