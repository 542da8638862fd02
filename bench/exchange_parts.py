"""`python -m bench.exchange_parts`: the CPU an authorization code exchange costs, part by part.

On PostgreSQL (durable) + Redis, as `make bench` (`bench.run.seeded_service`): the population
seeded, a trusted app registered and BENCH_EXCHANGE_PARTS codes (default 600) made through the
real `/oauth2/authorize` by signed-in browsers. Then, in this process, with a container built from
the same settings, each code is exchanged through the token endpoint's own grant
(`TesseraAuthorizationServer.create_token_response`, Authlib included; no HTTP, no thread
hand-off), one at a time, and the thread's CPU time (`time.thread_time`) is summed inside each
part. Sampling and tracing profilers inflate Python code against C and waits (yappi put half
the exchange in Redis calls); timing the parts themselves does not. The HTTP side of the same
request (uvicorn, the middleware, the form, the log line) is what `bench.cpu_per_request`
measures for the bare endpoint and `/me`.
"""

from __future__ import annotations

import collections
import functools
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from authlib.oauth2.rfc6749.grants.authorization_code import AuthorizationCodeGrant
from eventsourcing.application import Application

from application.clients.authorization_codes import AuthorizationCodes
from application.clients.person_tokens import PersonTokens
from application.clients.registry import Clients
from application.persistence.event_log import EventLog
from application.sessions.lifecycle import Sessions
from bench.config import load_config
from bench.person_tokens import CALLBACK, People
from bench.run import Bench, seeded_service
from infrastructure.refresh_chains import RedisRefreshChains
from infrastructure.revocation import RedisRevocationList
from infrastructure.signing_keys import SigningKeys
from interfaces.container import build
from interfaces.http.oauth2 import provider_edge
from interfaces.http.oauth2_server import (
    Form,
    FormRequest,
    IdToken,
    PersonCode,
    TesseraAuthorizationServer,
)
from interfaces.logs import configure_logging
from interfaces.security_log import SecurityLog

# (depth, where, what): the parts timed, each inside the one above it at depth - 1.
PARTS: list[tuple[int, Any, str]] = [
    (0, TesseraAuthorizationServer, "create_token_response"),
    (1, AuthorizationCodeGrant, "validate_token_request"),
    (2, Clients, "authenticate"),
    (2, AuthorizationCodes, "take"),
    (1, PersonCode, "create_token_response"),
    (2, Sessions, "start_app"),
    (3, RedisRevocationList, "standing_now"),
    (3, EventLog, "save"),
    (4, Application, "save"),
    (4, SecurityLog, "saved"),
    (4, EventLog, "_announce"),
    (3, RedisRefreshChains, "begin"),
    (2, PersonTokens, "access_token"),
    (1, IdToken, "process_token"),
    (2, PersonTokens, "id_token"),
    (3, SigningKeys, "sign"),
]
WARM_UP = 100  # exchanges first, untimed: every person's account read once in this process


@contextmanager
def timed(parts: list[tuple[int, Any, str]]) -> Iterator[dict[str, list[float]]]:
    """Each part wrapped to add its calls' thread CPU seconds to the answer, while inside."""
    spent: dict[str, list[float]] = collections.defaultdict(list)
    originals = [(owner, name, getattr(owner, name)) for _, owner, name in parts]

    def wrapped(label: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def part(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label].append(time.thread_time() - started)

        return part

    for owner, name, original in originals:
        setattr(owner, name, wrapped(f"{owner.__name__}.{name}", original))
    try:
        yield spent
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def main() -> int:
    config = load_config()
    count = int(os.environ.get("BENCH_EXCHANGE_PARTS", "600"))
    bench = Bench(config, Path(tempfile.mkdtemp(prefix="tessera-bench-parts-")))
    accounts = min(config.accounts_small, 200)
    with seeded_service(bench, accounts, "parts") as (server, settings, _, _):
        people = People(bench, server, settings, accounts)
        codes = bench.work / "codes.txt"
        people.codes(count + WARM_UP, codes)
        people.close()
        log = (bench.work / "parts.log").open("w")  # the lines written as the server writes them
        configure_logging(settings.log_level, stream=log, log_format=settings.log_format)
        container = build(settings)
        try:
            token_server = provider_edge(container).server
            headers = {
                "Authorization": people.authorization,
                "Content-Type": "application/x-www-form-urlencoded",
            }
            lines = iter(codes.read_text().split())

            def exchange() -> None:
                form = Form(
                    [
                        ("grant_type", "authorization_code"),
                        ("code", next(lines)),
                        ("code_verifier", next(lines)),
                        ("redirect_uri", CALLBACK),
                    ]
                )
                request = FormRequest(f"{settings.public_url}/oauth2/token", headers, form)
                status, body, _ = token_server.create_token_response(request)
                if status != 200:
                    raise RuntimeError(f"the exchange failed: {body}")

            for _ in range(WARM_UP):
                exchange()
            with timed(PARTS) as spent:
                started = time.thread_time()
                for _ in range(count):
                    exchange()
                whole = time.thread_time() - started
        finally:
            container.close()
            log.close()
    print(f"{count} exchanges, one at a time: {1000 * whole / count:.3f} ms of CPU each")
    for depth, owner, name in PARTS:
        label = f"{owner.__name__}.{name}"
        seconds = spent.get(label, [])
        per_call = f"{len(seconds) / count:.0f} call" + ("s" if len(seconds) != count else "")
        print(
            f"  {'  ' * depth}{label:<{52 - 2 * depth}} {1000 * sum(seconds) / count:6.3f} ms"
            f"  ({per_call})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
