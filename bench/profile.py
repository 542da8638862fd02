"""`make bench-profile SCENARIO=me|refresh|login`: where the server's time goes under one
scenario's load. py-spy samples every server process (on PostgreSQL + Redis, as `make bench`)
while wrk runs, and the functions are ranked by the share of samples they were on the stack
for (inclusive) and at the top of it (self). The raw samples (collapsed stacks, the input of
flame graph tools) are kept in bench/results/.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench.config import load_config
from bench.run import RESULTS, Bench
from bench.seed import PASSWORD
from bench.service import serve, service_env
from interfaces.settings import load_settings
from tests.servers import postgres_cluster, start_redis

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
_SITE = re.compile(r"^.*/site-packages/")
# Frames every sample passes through (thread and event-loop plumbing): left out of the ranking.
_PLUMBING = re.compile(
    r"\((threading\.py|<string>|multiprocessing/\w+\.py|asyncio/(runners|base_events|events)\.py"
    r"|concurrent/futures/thread\.py|uvicorn/(_subprocess|_compat|server|supervisors/\w+)\.py)\)$"
)


def record(scenario: str) -> Path:
    config = load_config()
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise SystemExit("py-spy is not installed: `make bench-profile` installs it")
    work = Path(tempfile.mkdtemp(prefix="tessera-profile-"))
    bench = Bench(config, work)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = RESULTS / f"profile-{scenario}-{stamp}.txt"
    with postgres_cluster() as cluster:
        redis = start_redis()
        try:
            env = service_env(work / "pg", cluster.new_database(), redis.url)
            (work / "pg").mkdir()
            bench.seed(load_settings(env), 0, config.accounts_small, "PG+Redis")
            with serve(env, config.server_workers, work / "server.log") as server:
                bench.warm(server)
                access, refresh = bench.sign_in(server, config.accounts_small, "profile")
                load = {
                    "me": bench.wrk("me.lua", server.url, config.connections, tokens=str(access)),
                    "refresh": bench.wrk(
                        "refresh.lua", server.url, config.connections, tokens=str(refresh)
                    ),
                    "login": bench.wrk(
                        "login.lua",
                        server.url,
                        config.login_connections,
                        accounts=str(config.accounts_small),
                        password=PASSWORD,
                    ),
                }[scenario].start()
                samplers = [
                    subprocess.Popen(
                        [
                            str(py_spy),
                            "record",
                            f"--pid={pid}",
                            f"--duration={max(1, config.duration - 2)}",
                            "--rate=100",
                            "--nonblocking",
                            "--gil",  # what holds the interpreter: CPU, not waits
                            "--format=raw",
                            f"--output={work / f'{pid}.txt'}",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    for pid in server.worker_pids()
                ]
                for sampler in samplers:
                    sampler.wait()
                result = load.result()
        finally:
            redis.stop()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("".join(p.read_text() for p in sorted(work.glob("[0-9]*.txt"))))
    print(
        f"{scenario}: {result.rate():,.1f} req/s, p50 {result.p50_ms:.1f} ms, statuses {result.statuses}"
    )
    shutil.rmtree(work, ignore_errors=True)
    return output


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{match['function']} ({_SITE.sub('', match['file'])})"


def summarise(path: Path, top: int = 30) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_name(f) for f in stack.split(";")]
        # py-spy's raw stacks start with the thread ("process N:..." / "thread (0x...)") lines.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    lines = [f"{total} samples of threads holding the GIL", "", "inclusive:"]
    ranked = [(name, n) for name, n in inclusive.most_common() if not _PLUMBING.search(name)]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in ranked[:top]]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    scenario = sys.argv[1] if len(sys.argv) > 1 else "me"
    if scenario not in {"me", "refresh", "login"}:
        raise SystemExit("usage: python -m bench.profile me|refresh|login")
    path = record(scenario)
    print(summarise(path))
    print(f"\nraw samples (collapsed stacks) in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
