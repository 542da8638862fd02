"""`python -m bench.cpu_per_request`: the server's CPU time per request (all its processes and
threads, from /proc) for the bare endpoint, /me, and the OpenID Provider's userinfo,
client_credentials and introspection, BENCH_CPU_ROUNDS times in turns, on PostgreSQL (durable)
+ Redis. On a machine shared with other work, throughput ratios swing with what else runs;
CPU per request swings much less, so these say what each endpoint costs against the others."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.config import load_config
from bench.load import Wrk
from bench.machine_tokens import GRANT, bench_client
from bench.person_tokens import People
from bench.run import Bench, seeded_service


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds of these processes' threads so far."""
    ticks = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> int:
    config = load_config()
    rounds = int(os.environ.get("BENCH_CPU_ROUNDS", "2"))
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-cpu-"))
    bench = Bench(config, work)
    accounts = min(config.accounts_small, 200)
    with seeded_service(bench, accounts, "me") as service:
        server, settings, access, _ = service
        authorization, token = bench_client(server, settings)
        people = People(bench, server, settings, accounts)
        app_tokens = people.access_tokens(server, 64, work / "userinfo.txt")
        people.close()
        seconds, url, n = config.op_duration, server.url, config.connections
        loads = {
            "bare /health/live": Wrk("get.lua", f"{url}/health/live", seconds, n, 2),
            "GET /api/users/me": Wrk("me.lua", url, seconds, n, 2, {"tokens": str(access)}),
            "GET /oauth2/userinfo": Wrk(
                "me.lua",
                url,
                seconds,
                n,
                2,
                {"tokens": str(app_tokens), "path": "/oauth2/userinfo"},
            ),
            "client_credentials": Wrk(
                "form.lua",
                url,
                seconds,
                n,
                2,
                {"path": "/oauth2/token", "body": GRANT, "authorization": authorization},
            ),
            "introspection": Wrk(
                "form.lua",
                url,
                seconds,
                n,
                2,
                {
                    "path": "/oauth2/introspect",
                    "body": f"token={token}",
                    "authorization": authorization,
                },
            ),
        }
        pids = server.worker_pids()
        for _ in range(rounds):
            for name, load in loads.items():
                before = cpu_seconds(pids)
                result = load.run()
                spent = cpu_seconds(pids) - before
                print(
                    f"{name:22} {result.rate(200):8,.0f} req/s "
                    f"{1000 * spent / max(1, result.requests):6.3f} ms CPU/request "
                    f"{result.statuses}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
