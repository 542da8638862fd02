"""Issue #22: many codes of one person exchanged at once, through the real app on PostgreSQL +
Redis. Each exchange must get its tokens: none may run out of conflict retries (a 500)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from interfaces.container import Container
from tests.http.test_api import Client
from tests.http.test_oauth2_person import WIKI, code_for, exchange, pkce, register, sign_in

PARALLEL = 20
# A public client (PKCE alone): a confidential one's exchanges count against the client
# authentication throttle, which is not what this is about.
PUBLIC_WIKI = replace(WIKI, public=True)


@pytest.mark.parametrize("settings", ["postgres+redis"], indirect=True)
def test_parallel_exchanges_of_one_persons_codes_all_get_tokens(
    client: Client, container: Container
) -> None:
    client_id, secret = register(container, PUBLIC_WIKI)
    sign_in(client, container)
    codes = []
    for _ in range(PARALLEL):
        verifier, challenge = pkce()
        codes.append((code_for(client, client_id, challenge), verifier))

    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(
            pool.map(lambda got: exchange(client, client_id, secret, got[0], got[1]), codes)
        )

    statuses = [answer.status_code for answer in answers]
    assert statuses == [200] * PARALLEL, [a.text for a in answers if a.status_code != 200]
    assert len({answer.json()["refresh_token"] for answer in answers}) == PARALLEL
