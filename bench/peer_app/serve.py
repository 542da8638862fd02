"""`uvicorn app:app --workers N --no-access-log`, with the workers started as `tessera serve`
starts its own (interfaces/workers.py: each on a listening socket of its own, bound with
SO_REUSEPORT, so the kernel spreads connections evenly), so the comparison measures the two
services and not how wrk's connections happened to land on their workers.

    PEER_DATABASE_URL=postgresql+asyncpg://... python bench/peer_app/serve.py PORT WORKERS
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

# The repository, for interfaces/workers.py alone: it needs nothing but uvicorn, which the
# peer's virtualenv has (the same version), and none of tessera's packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from interfaces.workers import supervisor

if __name__ == "__main__":
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    config = uvicorn.Config(
        "app:app",
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )
    supervisor(config).run()
