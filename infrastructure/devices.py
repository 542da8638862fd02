"""A session's device in a person's words, from its User-Agent header, by ua-parser (uap-core's
rules, kept up to date by their project) rather than by patterns of our own."""

from __future__ import annotations

import ua_parser

# Apple's devices say which they are; other phones name a model code ("SM-G991B") or, since
# Chrome's reduced user agent, a placeholder ("K"), so those are named by their system.
_NAMED_DEVICES = frozenset({"iPhone", "iPad", "iPod", "Mac"})


def device_name(user_agent: str) -> str | None:
    """Words like "Chrome 156 on Linux", "Mobile Safari 17 on iPhone", "curl 8"; None where the
    parser recognises neither a browser nor a system. No system version: browsers now freeze it
    (Windows 10 for 11, macOS 10.15.7, Android 10), so it would mislead."""
    if not user_agent:
        return None
    found = ua_parser.parse(user_agent)
    browser = ""
    if found.user_agent is not None:
        browser = found.user_agent.family
        if found.user_agent.major:
            browser = f"{browser} {found.user_agent.major}"
    system = found.os.family if found.os is not None else ""
    if found.device is not None and found.device.family in _NAMED_DEVICES:
        system = found.device.family
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or None
