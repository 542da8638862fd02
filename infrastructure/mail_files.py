"""The embedded default's mail transport: each mail an .eml file under DATA_DIR/mail/."""

from __future__ import annotations

import os
import re
import tempfile
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from application.ports import OutgoingMail


class MailDirectory:
    def __init__(self, directory: Path, sender: str) -> None:
        self._directory = directory
        self._sender = sender
        directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        return self._directory / (re.sub(r"[^A-Za-z0-9_.-]", "-", key) + ".eml")

    def send(self, mail: OutgoingMail) -> None:
        """The file name is the idempotency key, and the write is an atomic rename: sending a key
        twice leaves one whole file, never two copies nor half of one."""
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message["Message-ID"] = make_msgid(idstring=mail.key.replace(":", "."))
        # 7bit/8bit rather than quoted-printable keeps the link on one line, whole, to copy.
        message.set_content(mail.text, cte="7bit" if mail.text.isascii() else "8bit")
        target = self.path_for(mail.key)
        fd, temporary = tempfile.mkstemp(dir=self._directory, prefix=".sending-")
        with os.fdopen(fd, "wb") as file:
            file.write(message.as_bytes())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
