"""Load from wrk: one process per run, a Lua script per scenario (bench/lua/), and the summary
line the scripts print read back as a LoadResult."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).parent / "lua"
_MARK = "BENCH_JSON "


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[str, int]
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float
    mean_ms: float
    # Per-status latency, when every wrk thread had one connection (see common.lua).
    by_status: dict[str, dict[str, float]] = field(default_factory=dict)

    def rate(self, *statuses: int) -> float:
        """Answers per second with these statuses (all answers when none are named)."""
        if not statuses:
            return self.requests / self.seconds
        return sum(self.statuses.get(str(s), 0) for s in statuses) / self.seconds

    def share(self, status: int) -> float:
        answered = sum(self.statuses.values())
        return self.statuses.get(str(status), 0) / answered if answered else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "statuses": self.statuses,
            "errors": self.errors,
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "mean_ms": round(self.mean_ms, 2),
            "by_status": self.by_status,
        }


@dataclass
class Wrk:
    """One wrk run in the background: start() it, then result() waits for its summary."""

    script: str
    url: str
    duration: int
    connections: int
    threads: int
    options: dict[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[str] | None = None

    def start(self) -> Wrk:
        binary = shutil.which("wrk")
        if binary is None:
            raise RuntimeError("wrk not found: `make bench` installs it (bench/install-wrk.sh)")
        threads = min(self.threads, self.connections)
        options = {**self.options, "threads": str(threads), "connections": str(self.connections)}
        if threads == self.connections:
            options["timed"] = "1"
        command = [
            binary,
            f"--threads={threads}",
            f"--connections={self.connections}",
            f"--duration={self.duration}s",
            "--timeout=10s",  # wrk's default (2 s) would count a slow login as an error
            f"--script={LUA / self.script}",
            self.url,
            "--",
            *(f"{k}={v}" for k, v in options.items()),
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        return self

    def result(self) -> LoadResult:
        assert self._process is not None, "start() first"
        output, _ = self._process.communicate(timeout=self.duration + 60)
        for line in output.splitlines():
            if line.startswith(_MARK):
                data = json.loads(line[len(_MARK) :])
                break
        else:
            raise RuntimeError(f"wrk printed no summary:\n{output}")
        return LoadResult(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            statuses=data["statuses"],
            errors=data["errors"],
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            mean_ms=data["mean_us"] / 1000,
            by_status={
                status: {
                    "count": timing["count"],
                    "p50_ms": round(timing["p50_us"] / 1000, 2),
                    "p99_ms": round(timing["p99_us"] / 1000, 2),
                }
                for status, timing in data["timed"].items()
            },
        )

    def run(self) -> LoadResult:
        return self.start().result()
