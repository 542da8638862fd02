"""The OpenID Provider's machine-to-machine calls, which APIs make most (issue #22): the
client_credentials grant as a ratio to the bare endpoint (goal >= 0.25), introspection as a
ratio to /me (goal >= 0.8), each measured between two runs of its limit, and also per core.

Each run of these figures lasts BENCH_OP_DURATION seconds (6 by default, so a figure and its
two limits take under 20 s). `python -m bench.machine_tokens` runs them alone, on PostgreSQL
(durable) + Redis with `tessera serve --workers N`, after the same seeding and sign-ins as
`make bench`."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench.load import LoadResult, Wrk
from bench.report import Figure
from bench.service import Server
from domain.client import ClientSettings
from interfaces.container import build
from interfaces.settings import Settings

if TYPE_CHECKING:
    from bench.run import Bench

CLIENT_CREDENTIALS_TARGET = 0.25  # of the bare endpoint
INTROSPECTION_TARGET = 0.80  # of /me


def basic_authorization(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


GRANT = "grant_type=client_credentials"


def bench_client(server: Server, settings: Settings) -> tuple[str, str]:
    """A client registered in the running service's store: its Authorization header, and an
    access token it was issued (to introspect)."""
    container = build(settings)
    try:
        issued = container.clients.register(
            ClientSettings(
                name="bench",
                grant_types=("client_credentials",),
                scopes=("bench:read",),
            ),
            "bench",
        )
    finally:
        container.close()
    assert issued.client_secret is not None
    authorization = basic_authorization(issued.client_id, issued.client_secret)
    answer = httpx.post(
        f"{server.url}/oauth2/token",
        content=GRANT,
        headers={
            "Authorization": authorization,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    answer.raise_for_status()
    return authorization, answer.json()["access_token"]


def machine_figures(
    bench: Bench, server: Server, settings: Settings, tokens: Path, backend: str
) -> None:
    """Registers a client in the running service's store, then measures both calls; `tokens`
    are the people's access tokens /me is measured with."""
    authorization, token = bench_client(server, settings)
    grant = GRANT

    def form(path: str, body: str) -> LoadResult:
        return short(
            bench, "form.lua", server.url, path=path, body=body, authorization=authorization
        )

    issued_run, bare, around = bench.bracketed(
        lambda: bare_rate(bench, server), lambda: form("/oauth2/token", grant)
    )
    add_figure(
        bench,
        "POST /oauth2/token (client_credentials)",
        issued_run,
        bare,
        around,
        "bare /health/live req/s",
        CLIENT_CREDENTIALS_TARGET,
        backend,
    )
    looked, me_rate, me_around = bench.bracketed(
        lambda: short(bench, "me.lua", server.url, tokens=str(tokens), path="/api/users/me").rate(
            200
        ),
        lambda: form("/oauth2/introspect", f"token={token}"),
    )
    add_figure(
        bench,
        "POST /oauth2/introspect",
        looked,
        me_rate,
        me_around,
        "GET /api/users/me req/s",
        INTROSPECTION_TARGET,
        backend,
    )


def short(bench: Bench, script: str, url: str, **options: str) -> LoadResult:
    """One run of BENCH_OP_DURATION seconds, with the throughput scenarios' connections."""
    c = bench.config
    return Wrk(
        script=script,
        url=url,
        duration=c.op_duration,
        connections=c.connections,
        threads=c.threads,
        options=options,
    ).run()


def bare_rate(bench: Bench, server: Server) -> float:
    result = short(bench, "get.lua", f"{server.url}/health/live")
    if result.rate(200) < result.rate():
        raise RuntimeError(f"the bare endpoint failed: {result.statuses} {result.errors}")
    return result.rate(200)


def add_figure(
    bench: Bench,
    scenario: str,
    result: LoadResult,
    limit: float,
    around: tuple[float, float],
    limit_name: str,
    target: float,
    backend: str,
    extra: str = "",
) -> None:
    rate = result.rate(200)
    ratio = rate / limit
    odd = {s: n for s, n in result.statuses.items() if s != "200"}
    bench.report.add(
        Figure(
            scenario=scenario,
            backend=backend,
            value=rate,
            unit="req/s",
            p50_ms=result.p50_ms,
            p99_ms=result.p99_ms,
            limit_name=limit_name,
            limit=limit,
            ratio=ratio,
            target=f">= {target}",
            met=ratio >= target,
            note="; ".join(
                part
                for part in (
                    f"limit {around[0]:,.0f} req/s before, {around[1]:,.0f} after",
                    f"{rate / bench.config.cores:,.0f} req/s per core",
                    f"other answers {odd}" if odd else "",
                    extra,
                )
                if part
            ),
            load=result.as_json(),
        )
    )


def main() -> int:
    """`python -m bench.machine_tokens`: these figures alone (see the module)."""
    from bench.run import signed_in_alone  # bench.run imports this module

    return signed_in_alone(machine_figures, "op")


if __name__ == "__main__":
    raise SystemExit(main())
