"""Mail as messages: MIME building, the file sink of the embedded default, and SMTP."""

from __future__ import annotations

import glob
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from application.ports import OutgoingMail, TransientMailError

MESSAGE_ID_DOMAIN = "tessera.invalid"


def mime(mail: OutgoingMail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    # The Message-ID is the delivery key itself, so a copy re-sent after a crash (a worker killed
    # between the server's 250 and the ledger's "sent") is the same message to the receiver, which
    # may drop it (RFC 5322 3.6.4). make_msgid() would add a time and a random part: a new id.
    message["Message-ID"] = f"<{mail.key}@{MESSAGE_ID_DOMAIN}>"
    # 7bit/8bit rather than quoted-printable keeps a link on one line, whole, to copy.
    message.set_content(mail.text, cte="7bit" if mail.text.isascii() else "8bit")
    message.add_alternative(mail.html, subtype="html")
    return message


class MailDirectory:
    """The embedded default's transport: each mail an .eml file under DATA_DIR/mail/."""

    def __init__(self, directory: Path, sender: str) -> None:
        self._directory = directory
        self._sender = sender
        directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        return self._directory / (_safe(key) + ".eml")

    def send(self, mail: OutgoingMail) -> None:
        """The file name is the key and the write an atomic rename: a key sent twice leaves one
        whole file, never two copies nor half of one."""
        # The temporary file names its key too, so that what a crash left of it is found.
        fd, temporary = tempfile.mkstemp(
            dir=self._directory, prefix=f"{_SENDING}{_safe(mail.key)}."
        )
        with os.fdopen(fd, "wb") as file:
            file.write(mime(mail, self._sender).as_bytes())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path_for(mail.key))

    def remove(self, keys: Iterable[str]) -> None:
        """Deletes these deliveries' files, and any half-written one a crash left of them."""
        for key in keys:
            self.path_for(key).unlink(missing_ok=True)
            for left in self._directory.glob(f"{_SENDING}{glob.escape(_safe(key))}.*"):
                left.unlink(missing_ok=True)


_SENDING = ".sending-"


def _safe(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", key)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    starttls: bool = False  # MAIL_USE_TLS
    implicit_tls: bool = False  # MAIL_USE_SSL (SMTPS, usually port 465)
    username: str | None = None
    password: str | None = None
    sender: str = "Tessera <no-reply@localhost>"
    timeout: float = 30.0


class SmtpRelay:
    """Hands each mail to an SMTP server (smtplib). 4xx replies and network failures are
    transient, to be retried; 5xx replies are permanent."""

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    def send(self, mail: OutgoingMail) -> None:
        s = self._settings
        context = ssl.create_default_context()
        try:
            smtp: smtplib.SMTP
            if s.implicit_tls:
                smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with smtp:
                if s.starttls and not s.implicit_tls:
                    smtp.starttls(context=context)
                if s.username:
                    smtp.login(s.username, s.password or "")
                smtp.send_message(mime(mail, s.sender))
        except smtplib.SMTPResponseException as error:
            if 400 <= error.smtp_code < 500:
                raise TransientMailError(f"SMTP {error.smtp_code}") from error
            raise
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            if all(400 <= code < 500 for code in codes):
                raise TransientMailError(f"SMTP recipients refused {codes}") from error
            raise
        except (
            TimeoutError,
            smtplib.SMTPServerDisconnected,
            smtplib.SMTPConnectError,
            OSError,
        ) as error:
            raise TransientMailError(type(error).__name__) from error
