"""A mail re-sent after a crash is the same message: its Message-ID is its delivery key."""

from __future__ import annotations

from application.ports import OutgoingMail
from infrastructure.mail_files import mime

KEY = "41eab084-ccc2-4f2a-8865-a6208b7878a8-2"  # the event's originator id and version


def test_every_copy_of_a_delivery_carries_one_message_id() -> None:
    mail = OutgoingMail(key=KEY, to="ada@example.com", subject="Hi", text="t", html="<p>t</p>")
    first = mime(mail, "Tessera <no-reply@example.com>")
    again = mime(mail, "Tessera <no-reply@example.com>")
    assert first["Message-ID"] == again["Message-ID"] == f"<{KEY}@tessera.invalid>"
