"""Before (base commit) and after (this worktree), alternating, on the held database: each
figure divided by the store read speed measured just before and after it (bench/read_side.py's
store_read_rate). Export timed as a process (as the bench does), rebuilds by their own report."""
import os, sys, time, subprocess, resource
sys.path.insert(0, "/work/wt-readside")
from bench.read_side import store_read_rate
env = dict(os.environ)
PY = "/work/wt-readside/.venv/bin/python"
CMDS = {"before": [PY, "/tmp/rs/base_tessera.py"], "after": ["/work/wt-readside/.venv/bin/tessera"]}
events = int(sys.argv[1]); rounds = int(sys.argv[2]); what = sys.argv[3].split(",")
for r in range(rounds):
    for name in what:
        for side in ("before", "after") if r % 2 == 0 else ("after", "before"):
            if side == "before" and os.environ.get("SKIP_BEFORE"):
                continue
            lim0 = store_read_rate(env)
            if name == "export":
                t = time.perf_counter()
                p = subprocess.Popen(CMDS[side] + ["audit", "export", "--output", f"/tmp/rs/trail-{side}.jsonl"], env=env, stderr=subprocess.DEVNULL)
                _, status, usage = os.wait4(p.pid, 0)
                sec = time.perf_counter() - t; rss = usage.ru_maxrss / 1024
            else:
                out = subprocess.run(CMDS[side] + ["projector", "rebuild", name], env=env, capture_output=True, text=True, check=True).stdout
                sec = float(out.rsplit(" in ", 1)[1].rstrip("s\n")); rss = 0
            lim1 = store_read_rate(env); lim = (lim0 + lim1) / 2
            print(f"round {r} {name:9} {side:6} {sec:7.2f}s {events/sec:9,.0f} ev/s  store {lim:9,.0f}  ratio {events/sec/lim:.2f}" + (f"  rss {rss:.0f} MiB" if rss else ""), flush=True)
