"""End to end, through a real `tessera serve` on the embedded default and on PostgreSQL: two
refreshes of one token racing each other (two tabs, a retried request) both succeed and leave
the session alive; the same token replayed after REFRESH_REUSE_INTERVAL ends the session."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_serve import PASSWORD, serving, wait_for_mail


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """At the default settings (a reuse interval of 10 seconds)."""
    with serving(request.param, request, tmp_path) as served:
        yield served


@pytest.fixture(params=["sqlite", "postgres"])
def short_interval_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """A one-second interval: what the replay test is about, without a ten-second wait."""
    with serving(request.param, request, tmp_path, REFRESH_REUSE_INTERVAL="1") as served:
        yield served


def signed_in(http: httpx.Client, data_dir: Path) -> dict[str, Any]:
    registered = http.post(
        "/api/auth/register",
        json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    text = wait_for_mail(data_dir / "mail", "ada@example.com")
    match = re.search(r"verify-email\?token=([A-Za-z0-9_-]+)", text)
    assert match, text
    assert http.post("/api/auth/verify-email", json={"token": match.group(1)}).status_code == 200
    tokens = http.post("/api/auth/login", json={"login": "ada", "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    body: dict[str, Any] = tokens.json()
    return body


def refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/api/auth/refresh", json={"refresh_token": token})


def me(http: httpx.Client, tokens: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    return http.get("/api/users/me", headers=headers).status_code


def test_two_concurrent_refreshes_of_one_token_both_succeed_and_the_session_lives(
    server: tuple[str, Path],
) -> None:
    base, data_dir = server
    with httpx.Client(base_url=base, timeout=10) as http:
        tokens = signed_in(http, data_dir)
    answers: list[httpx.Response] = []
    start = threading.Barrier(2)

    def tab() -> None:
        # A client of its own for each tab, so the two requests really are in flight together.
        with httpx.Client(base_url=base, timeout=10) as own:
            start.wait()
            answers.append(refresh(own, tokens["refresh_token"]))

    tabs = [threading.Thread(target=tab) for _ in range(2)]
    for thread in tabs:
        thread.start()
    for thread in tabs:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    pairs = [a.json() for a in answers]
    assert pairs[0]["refresh_token"] == pairs[1]["refresh_token"], "both tabs on one chain"
    with httpx.Client(base_url=base, timeout=10) as http:
        assert all(me(http, pair) == 200 for pair in pairs)
        following = refresh(http, pairs[0]["refresh_token"])
        assert following.status_code == 200, following.text
        assert me(http, following.json()) == 200


def test_a_replay_after_the_interval_ends_the_session(
    short_interval_server: tuple[str, Path],
) -> None:
    base, data_dir = short_interval_server
    with httpx.Client(base_url=base, timeout=10) as http:
        first = signed_in(http, data_dir)
        second = refresh(http, first["refresh_token"])
        assert second.status_code == 200, second.text
        time.sleep(1.2)  # past REFRESH_REUSE_INTERVAL=1
        replayed = refresh(http, first["refresh_token"])
        assert replayed.status_code == 401
        assert replayed.json()["code"] == "refresh_token_reused"
        assert me(http, second.json()) == 401, "the session is over"
        after = refresh(http, second.json()["refresh_token"])
        assert after.status_code == 401
        assert after.json()["code"] == "invalid_refresh_token"
