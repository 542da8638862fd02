"""`uvicorn app:app --workers N --no-access-log`, with the one fix `tessera serve` has too: the
listening socket the workers share is marked as TCP, so accepted connections get TCP_NODELAY.
Without it every keep-alive answer waits ~40 ms for the client's delayed ACK (uvicorn#3149;
the peer's bare endpoint measured 710 req/s at p50 44 ms through the plain uvicorn command),
and the comparison would measure that bug instead of the two services.

    PEER_DATABASE_URL=postgresql+asyncpg://... python bench/peer_app/serve.py PORT WORKERS
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

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
    bound = config.bind_socket()
    shared = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    Multiprocess(config, sockets=[shared]).run()
