"""The OpenID Provider's calls on a person's behalf (issue #22): userinfo as a ratio to /me (goal
>= 0.8), and the authorization code exchange as a ratio to the bare endpoint (goal >= 0.15),
each between two runs of its limit (BENCH_OP_DURATION seconds each), and also per core.

The codes are made ahead through the real path: people signed in on the pages (the login
form), a trusted app (no consent page) sent to /oauth2/authorize with PKCE S256, the code read
from the redirect. A code lives 60 s, so they are made just before the bare endpoint's first
run, and the exchange's run stops when they are spent (each once). `python -m
bench.person_tokens` runs these figures alone, on PostgreSQL (durable) + Redis."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from bench.load import LoadResult
from bench.machine_tokens import add_figure, bare_rate, basic_authorization, short
from bench.seed import PASSWORD, username
from bench.service import Server
from domain.client import ClientSettings
from interfaces.container import build
from interfaces.settings import Settings

if TYPE_CHECKING:
    from bench.run import Bench

USERINFO_TARGET = 0.80  # of /me
EXCHANGE_TARGET = 0.15  # of the bare endpoint
CALLBACK = "https://app.bench.test/callback"
CODE_LIFETIME = 60.0  # seconds (application/clients/authorization_codes.py)
# People signed in on the pages, whose browsers get the codes: as many as the app's sessions
# that start at once need, or the exchanges contend for a few accounts' streams (each one
# records the app's session on its account).
PEOPLE = 128
AUTHORIZING_THREADS = 8


def _register_app(settings: Settings) -> tuple[str, str]:
    container = build(settings)
    try:
        issued = container.clients.register(
            ClientSettings(
                name="bench app",
                redirect_uris=(CALLBACK,),
                grant_types=("authorization_code",),
                scopes=("openid", "profile", "email"),
                trusted=True,  # no consent page: every authorization answers with a code
            ),
            "bench",
        )
    finally:
        container.close()
    assert issued.client_secret is not None
    return issued.client_id, issued.client_secret


def _signed_in(server: Server, n: int) -> httpx.Client:
    """A browser of the person user<n>, signed in on the pages."""
    browser = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)
    page = browser.get("/login").text
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, page
    for _ in range(20):  # the hash gate turns away what it cannot take at once
        answer = browser.post(
            "/login", data={"csrf_token": found[1], "login": username(n), "password": PASSWORD}
        )
        if answer.status_code != 503:
            break
        time.sleep(0.5)
    if answer.status_code != 303:
        raise RuntimeError(f"page sign-in of {username(n)}: {answer.status_code} {answer.text}")
    return browser


def _code(browser: httpx.Client, client_id: str) -> str:
    """One code through /oauth2/authorize, and its PKCE verifier: `code verifier`."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": CALLBACK,
        "scope": "openid profile email",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    try:
        answer = browser.get("/oauth2/authorize", params=params)
    except httpx.RemoteProtocolError:
        # A kept-alive connection the server closed while it sat idle (other browsers were
        # signing in): asked again on a new one.
        answer = browser.get("/oauth2/authorize", params=params)
    location = answer.headers.get("location", "")
    if answer.status_code != 302 or not location.startswith(CALLBACK):
        raise RuntimeError(f"authorize: {answer.status_code} {location or answer.text[:300]}")
    return f"{parse_qs(urlsplit(location).query)['code'][0]} {verifier}"


class People:
    """Signed-in browsers and a trusted app; codes on demand, written to a file."""

    def __init__(self, bench: Bench, server: Server, settings: Settings, accounts: int) -> None:
        self.bench = bench
        self.client_id, secret = _register_app(settings)
        self.authorization = basic_authorization(self.client_id, secret)
        with ThreadPoolExecutor(AUTHORIZING_THREADS) as pool:
            self.browsers = list(
                pool.map(lambda n: _signed_in(server, n), range(min(PEOPLE, accounts)))
            )

    def codes(self, count: int, path: Path) -> float:
        """`count` fresh codes in `path`; the seconds they took."""
        started = time.monotonic()
        shares = [count // len(self.browsers)] * len(self.browsers)
        shares[0] += count - sum(shares)

        def made(browser_share: tuple[httpx.Client, int]) -> list[str]:
            browser, share = browser_share
            return [_code(browser, self.client_id) for _ in range(share)]

        with ThreadPoolExecutor(AUTHORIZING_THREADS) as pool:
            lines = [
                line
                for part in pool.map(made, zip(self.browsers, shares, strict=True))
                for line in part
            ]
        # Shuffled: a real exchange load is of many people's sign-ins at once, not one person's
        # in a row (each exchange records the app's session on the person's account, and two
        # at once for one account conflict and are rerun).
        random.shuffle(lines)
        path.write_text("".join(line + "\n" for line in lines))
        return time.monotonic() - started

    def access_tokens(self, server: Server, count: int, path: Path) -> Path:
        """Access tokens for userinfo, each from a code exchanged."""
        self.codes(count, path)
        tokens = []
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for line in path.read_text().split("\n"):
                if not line:
                    continue
                code, verifier = line.split()
                answer = http.post(
                    "/oauth2/token",
                    data={
                        "grant_type": "authorization_code",
                        "code": code,
                        "code_verifier": verifier,
                        "redirect_uri": CALLBACK,
                    },
                    headers={"Authorization": self.authorization},
                )
                answer.raise_for_status()
                tokens.append(answer.json()["access_token"])
        path.write_text("".join(token + "\n" for token in tokens))
        return path

    def close(self) -> None:
        for browser in self.browsers:
            browser.close()


def person_figures(
    bench: Bench, server: Server, settings: Settings, tokens: Path, accounts: int, backend: str
) -> None:
    """userinfo beside /me (`tokens`: the people's first-party access tokens), then the code
    exchange beside the bare endpoint."""
    people = People(bench, server, settings, accounts)
    try:
        app_tokens = people.access_tokens(server, 64, bench.work / "userinfo-tokens.txt")
        read, me_rate, me_around = bench.bracketed(
            lambda: short(
                bench, "me.lua", server.url, tokens=str(tokens), path="/api/users/me"
            ).rate(200),
            lambda: short(
                bench, "me.lua", server.url, tokens=str(app_tokens), path="/oauth2/userinfo"
            ),
        )
        add_figure(
            bench,
            "GET /oauth2/userinfo",
            read,
            me_rate,
            me_around,
            "GET /api/users/me req/s",
            USERINFO_TARGET,
            backend,
        )
        exchange_figure(bench, server, people, backend)
    finally:
        people.close()


def exchange_figure(bench: Bench, server: Server, people: People, backend: str) -> None:
    codes = bench.work / "codes.txt"
    count = bench.config.op_codes
    seconds = people.codes(count, codes)
    if seconds + 3 * bench.config.op_duration > CODE_LIFETIME - 5:
        raise RuntimeError(f"{count} codes took {seconds:.0f} s: too slow for their 60 s")

    def exchanged() -> LoadResult:
        return short(
            bench,
            "exchange.lua",
            server.url,
            codes=str(codes),
            authorization=people.authorization,
            redirect_uri=quote(CALLBACK, safe=""),
        )

    result, bare, around = bench.bracketed(lambda: bare_rate(bench, server), exchanged)
    spent = result.statuses.get("200", 0) >= count
    add_figure(
        bench,
        "POST /oauth2/token (authorization_code)",
        result,
        bare,
        around,
        "bare /health/live req/s",
        EXCHANGE_TARGET,
        backend,
        extra=(
            f"{count:,} codes made ahead through /oauth2/authorize in {seconds:.1f} s"
            + (
                "; all spent before the run's end: the rate is a lower bound (raise BENCH_OP_CODES)"
                if spent
                else ""
            )
        ),
    )


def main() -> int:
    """`python -m bench.person_tokens`: these figures alone (see the module)."""
    from bench.run import signed_in_alone  # bench.run imports this module

    def figures(
        bench: Bench, server: Server, settings: Settings, access: Path, backend: str
    ) -> None:
        person_figures(bench, server, settings, access, bench.config.accounts_small, backend)

    return signed_in_alone(figures, "op-person")


if __name__ == "__main__":
    raise SystemExit(main())
