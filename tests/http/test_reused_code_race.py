"""A code used twice, the second use racing the first (RFC 6749, 4.1.2: refused, and what the
first issued revoked), through the real app on both stores. The two orders are forced at the
exact point by letting the second use run inside the first (the app answers it from another
thread meanwhile); then many uses of each code at once, from threads. Whichever order, the
first use's tokens are dead afterwards: refresh refused, introspection inactive, userinfo 401."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import pytest

from interfaces.container import Container
from tests.http.test_api import Client
from tests.http.test_oauth2_person import code_for, exchange, pkce, register, sign_in

AT_ONCE = 8


def _dead(client: Client, client_id: str, secret: str | None, tokens: dict[str, Any]) -> None:
    refused = client.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=(client_id, secret or ""),
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    inactive = client.post(
        "/oauth2/introspect",
        data={"token": tokens["access_token"]},
        auth=(client_id, secret or ""),
    )
    assert inactive.json() == {"active": False}
    info = client.get(
        "/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.status_code == 401


def _refused(answer: Any) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "invalid_grant"


def test_a_second_use_answered_before_the_first_begins_its_chain_leaves_no_tokens(
    client: Client, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first use has taken the code and saved its session; the second is answered before
    the first's refresh chain begins (it finds no chain to end): the first use is refused too."""
    sign_in(client, container)
    client_id, secret = register(container)
    verifier, challenge = pkce()
    code = code_for(client, client_id, challenge)
    second: list[Any] = []
    begin = container.chains.begin

    def second_use_first(session_id: UUID, *args: Any) -> None:
        if not second:
            second.append(exchange(client, client_id, secret, code, verifier))
        begin(session_id, *args)

    monkeypatch.setattr(container.chains, "begin", second_use_first)
    first = exchange(client, client_id, secret, code, verifier)
    assert second, "the second use ran inside the first"
    _refused(second[0])
    _refused(first)


def test_a_second_use_answered_after_the_first_looked_kills_the_first_uses_tokens(
    client: Client, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second use is answered once the first has begun its chain and looked for an end:
    the first use gets its tokens, and they are dead."""
    sign_in(client, container)
    client_id, secret = register(container)
    verifier, challenge = pkce()
    code = code_for(client, client_id, challenge)
    second: list[Any] = []
    looks: list[Any] = []
    standing_now = container.revocations.standing_now

    def second_use_after(claims: Any) -> Any:
        found = standing_now(claims)
        looks.append(claims)
        if len(looks) == 2:  # the first use's look once its chain has begun
            second.append(exchange(client, client_id, secret, code, verifier))
        return found

    monkeypatch.setattr(container.revocations, "standing_now", second_use_after)
    first = exchange(client, client_id, secret, code, verifier)
    assert second, "the second use ran inside the first"
    _refused(second[0])
    assert first.status_code == 200, first.text
    _dead(client, client_id, secret, first.json())


def test_many_uses_of_a_code_at_once_give_tokens_to_at_most_one_and_kill_them(
    client: Client, container: Container
) -> None:
    sign_in(client, container)
    client_id, secret = register(container)
    for _ in range(3):
        verifier, challenge = pkce()
        code = code_for(client, client_id, challenge)
        with ThreadPoolExecutor(AT_ONCE) as pool:
            uses = [
                pool.submit(exchange, client, client_id, secret, code, verifier)
                for _ in range(AT_ONCE)
            ]
            answers = [use.result() for use in uses]
        given = [answer for answer in answers if answer.status_code == 200]
        assert len(given) <= 1
        for answer in answers:
            if answer.status_code != 200:
                _refused(answer)
        for answer in given:
            _dead(client, client_id, secret, answer.json())
