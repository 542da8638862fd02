"""A real SMTP server for the tests (aiosmtpd), whose answers a test can script."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.servers import free_port


@dataclass
class ScriptedHandler:
    """Accepts mail, unless told to refuse: `fail_first` refusals (451, transient) per recipient,
    or `always_refuse` (550, permanent); `rcpt_delay` seconds of thought before each recipient."""

    fail_first: int = 0
    always_refuse: bool = False
    rcpt_delay: float = 0.0
    delivered: list[EmailMessage] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    recipients_in_progress: int = 0  # RCPTs being thought about right now
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            self.recipients_in_progress += 1
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        with self.lock:
            self.recipients_in_progress -= 1
            self.attempts[address] += 1
            attempt = self.attempts[address]
        if self.always_refuse:
            return "550 5.1.1 mailbox unavailable"
        if attempt <= self.fail_first:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.delivered.append(message)  # type: ignore[arg-type]
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.delivered if m["To"] == address]


class SmtpServer:
    def __init__(self, handler: ScriptedHandler) -> None:
        self.handler = handler
        self.port = free_port()
        self._controller = Controller(handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()
