"""Sessions named in words: real User-Agent headers, as browsers and tools send them today."""

from __future__ import annotations

import pytest

from infrastructure.devices import device_name

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.mark.parametrize(
    ("user_agent", "words"),
    [
        (CHROME_LINUX, "Chrome 156 on Linux"),
        (SAFARI_IPHONE, "Mobile Safari 17 on iPhone"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            "Safari 17 on Mac",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Firefox 128 on Windows",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
            "Edge 126 on Windows",
        ),
        # Chrome's reduced user agent on Android: the model is a placeholder ("K"), so the
        # system names it.
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Mobile Safari/537.36",
            "Chrome Mobile 126 on Android",
        ),
        ("curl/8.5.0", "curl 8"),
    ],
)
def test_a_known_user_agent_is_named_in_words(user_agent: str, words: str) -> None:
    assert device_name(user_agent) == words


@pytest.mark.parametrize("user_agent", ["", "testclient", "<script>alert(1)</script>"])
def test_an_unknown_or_missing_user_agent_has_no_name(user_agent: str) -> None:
    assert device_name(user_agent) is None
