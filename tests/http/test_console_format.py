"""The console format's lines, held against a real request through the ASGI app: one short
line a person reads, the request's route, status and outcome; never JSON."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import pytest
from litestar.testing import TestClient

from interfaces.logs import ConsoleFormatter

Client = TestClient[Any]


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_refused_login_is_one_readable_line(client: Client) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(ConsoleFormatter())
    access = logging.getLogger("tessera.access")
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        client.post("/api/auth/login", json={"login": "nobody", "password": "wrong password!"})
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    (line,) = out.getvalue().splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d INFO    POST /api/auth/login 401 \(invalid_credentials\) [\d.]+ ms", line
    ), line


def test_extra_fields_follow_the_message_and_colours_are_dropped() -> None:
    record = logging.LogRecord("tessera", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    record.account_id = "a1"
    record.color_message = "\x1b[1mhello\x1b[0m"
    line = ConsoleFormatter().format(record)
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING hello you  account_id=a1", line), line
