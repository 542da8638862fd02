"""Drive parts of bench/read_side.py alone: PARTS=lag,export,rebuild  COUNTS=100000,1000000"""
import os, sys, tempfile, time, json
from pathlib import Path
from bench.config import load_config
from bench.run import Bench
from bench.read_side import ReadSideBench, NOTIFICATIONS_PER_ACCOUNT
from bench.seed import seed_accounts
from bench.service import service_env
from interfaces.container import build
from interfaces.settings import load_settings
from tests.servers import postgres_cluster

parts = os.environ.get("PARTS", "export,rebuild").split(",")
counts = [int(c) for c in os.environ.get("COUNTS", "100000").split(",")]
work = Path(tempfile.mkdtemp(prefix="rs-"))
bench = Bench(load_config(), work)
rs = ReadSideBench(bench)
with postgres_cluster(durable=True) as cluster:
    if "lag" in parts:
        rs.lag_under_login_load(cluster)
    env = service_env(work / "read-side", cluster.new_database(), None)
    Path(env["DATA_DIR"]).mkdir(parents=True)
    container = build(load_settings(env))
    accounts = 0
    memory = {}
    try:
        for count in counts:
            target = count // NOTIFICATIONS_PER_ACCOUNT
            t = time.perf_counter()
            seed_accounts(container, accounts, target, bench.password_hash)
            print(f"seeded {target} accounts in {time.perf_counter()-t:.1f}s", flush=True)
            accounts = target
            events = container.log.recorder.max_notification_id() or 0
            if "export" in parts:
                memory[events] = rs.export(env, events)
            if "rebuild" in parts:
                rs.rebuilds(env, events)
            if os.environ.get("HOLD"):
                print("env:", json.dumps(env), flush=True)
                Path("/tmp/rs/env.json").write_text(json.dumps(env))
                while not Path("/tmp/rs/release").exists():
                    time.sleep(2)
    finally:
        container.close()
    if len(memory) > 1:
        rs.memory_figure(memory)
print(bench.report.table())
