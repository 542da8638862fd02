"""`make bench-profile SCENARIO=me|refresh|login|client_credentials|introspection|userinfo|exchange`:
where the server's time goes under one scenario's load. py-spy samples every server process (on PostgreSQL + Redis, as `make bench`)
while wrk runs, in two views: `gil` (the thread holding the interpreter: Python's CPU time)
and `active` (every thread not idle: waits on PostgreSQL and Redis included). Functions are
ranked by the share of samples they were on the stack for (inclusive) and at its top (self).
The raw samples (collapsed stacks, the input of flame graph tools) are kept in bench/results/.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from bench.config import load_config
from bench.load import Wrk
from bench.machine_tokens import GRANT, bench_client
from bench.person_tokens import CALLBACK, People
from bench.run import RESULTS, Bench, seeded_service
from bench.seed import PASSWORD
from bench.service import Server
from interfaces.settings import Settings

SCENARIOS = (
    "me",
    "refresh",
    "login",
    "client_credentials",
    "introspection",
    "userinfo",
    "exchange",
)
VIEWS = {"gil": ["--gil"], "active": []}
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")
_SITE = re.compile(r"^.*/site-packages/")
# Frames every sample passes through (thread and event-loop plumbing): left out of the ranking.
_PLUMBING = re.compile(
    r"\((threading\.py|<string>|multiprocessing/\w+\.py|asyncio/(runners|base_events|events)\.py"
    r"|concurrent/futures/thread\.py|uvicorn/(_subprocess|_compat|server|supervisors/\w+)\.py)\)$"
)


def record(scenario: str) -> list[Path]:
    config = load_config()
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise SystemExit("py-spy is not installed: `make bench-profile` installs it")
    work = Path(tempfile.mkdtemp(prefix="tessera-profile-"))
    bench = Bench(config, work)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with seeded_service(bench, config.accounts_small, "profile") as service:
        server, settings, access, refresh = service
        authorization, token = bench_client(server, settings)
        person: dict[str, Wrk] = {}
        if scenario in ("userinfo", "exchange"):
            person[scenario] = _person_load(
                scenario, bench, server, settings, config.accounts_small
            )
        load = (
            person.get(scenario)
            or {
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
                "client_credentials": bench.wrk(
                    "form.lua",
                    server.url,
                    config.connections,
                    path="/oauth2/token",
                    body=GRANT,
                    authorization=authorization,
                ),
                "introspection": bench.wrk(
                    "form.lua",
                    server.url,
                    config.connections,
                    path="/oauth2/introspect",
                    body=f"token={token}",
                    authorization=authorization,
                ),
            }[scenario]
        ).start()
        # Two views of each process: threads holding the GIL (Python's CPU), and
        # every thread not idle (waits on PostgreSQL and Redis included).
        samplers = [
            subprocess.Popen(
                [
                    str(py_spy),
                    "record",
                    f"--pid={pid}",
                    f"--duration={max(1, config.duration - 2)}",
                    "--rate=100",
                    "--nonblocking",
                    *flags,
                    "--format=raw",
                    f"--output={work / f'{view}-{pid}.txt'}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid in server.worker_pids()
            for view, flags in VIEWS.items()
        ]
        workers = set(server.worker_pids())
        before, started = _cpu_seconds(workers), time.monotonic()
        for sampler in samplers:
            sampler.wait()
        after, sampled = _cpu_seconds(workers), time.monotonic() - started
        result = load.result()
    RESULTS.mkdir(parents=True, exist_ok=True)
    outputs = []
    for view in VIEWS:
        output = RESULTS / f"profile-{scenario}-{view}-{stamp}.txt"
        output.write_text("".join(p.read_text() for p in sorted(work.glob(f"{view}-*.txt"))))
        outputs.append(output)
    print(f"{scenario}: {result.rate():,.1f} req/s, p50 {result.p50_ms:.1f} ms, {result.statuses}")
    # While the samplers ran (wrk runs on for the last two seconds): processes that ended
    # meanwhile are left out.
    spent = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    available = config.cores * sampled
    print(f"CPU during the load, as a share of {config.cores} cores:")
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {100 * seconds / available:5.1f}%  {name} ({seconds:.1f} s)")
    shutil.rmtree(work, ignore_errors=True)
    return outputs


def _person_load(
    scenario: str, bench: Bench, server: Server, settings: Settings, accounts: int
) -> Wrk:
    """userinfo with 64 app access tokens, or the exchange of codes made just before (a code
    lives 60 s: the run's duration is the samplers', so make BENCH_OP_CODES last that long)."""
    people = People(bench, server, settings, accounts)
    try:
        if scenario == "userinfo":
            tokens = people.access_tokens(server, 64, bench.work / "userinfo-tokens.txt")
            return bench.wrk(
                "me.lua",
                server.url,
                bench.config.connections,
                tokens=str(tokens),
                path="/oauth2/userinfo",
            )
        codes = bench.work / "codes.txt"
        people.codes(bench.config.op_codes, codes)
        return bench.wrk(
            "exchange.lua",
            server.url,
            bench.config.connections,
            codes=str(codes),
            authorization=people.authorization,
            redirect_uri=quote(CALLBACK, safe=""),
        )
    finally:
        people.close()


def _cpu_seconds(server: set[int]) -> dict[str, float]:
    """CPU seconds (user + system) of every process on the machine so far, by kind."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = collections.defaultdict(float)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
            command = head.split("(", 1)[1]
            numbers = tail.split()
        except (OSError, IndexError, ValueError):
            continue
        pid = int(stat.parent.name)
        kind = "tessera server" if pid in server else _KINDS.get(command, "everything else")
        totals[kind] += (int(numbers[11]) + int(numbers[12])) / tick  # utime, stime
    return dict(totals)


_KINDS = {"postgres": "postgres", "wrk": "wrk", "redis-server": "redis-server"}


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
    lines = [f"{path.name}: {total} samples", "", "inclusive:"]
    ranked = [(name, n) for name, n in inclusive.most_common() if not _PLUMBING.search(name)]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in ranked[:top]]
    lines += ["", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    scenario = sys.argv[1] if len(sys.argv) > 1 else "me"
    if scenario not in SCENARIOS:
        raise SystemExit(f"usage: python -m bench.profile {'|'.join(SCENARIOS)}")
    for path in record(scenario):
        print(f"\n{summarise(path)}")
        print(f"\nraw samples (collapsed stacks) in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
