"""Turns recorded events into mails: a tracked projection, resumable after a crash."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.ports import Mailer, OutgoingMail, SecretBox
from domain.account import Account


class AccountMail:
    """Sends one mail per mail-worthy event.

    The mail's idempotency key is the event's identity, so an event processed again after a crash
    (sent, but not yet tracked) is delivered once. Only then is the position tracked. Links are
    built from configuration, never from a request's Host header, which an attacker controls.
    """

    name = "account_mail"
    topics: tuple[str, ...] = (
        get_topic(Account.EmailVerificationRequested),
        get_topic(Account.PasswordResetRequested),
    )

    def __init__(
        self,
        view: TrackingRecorder,
        mailer: Mailer,
        box: SecretBox,
        public_url: str,
        product_name: str,
    ) -> None:
        self.view = view
        self._mailer = mailer
        self._box = box
        self._public_url = public_url.rstrip("/")
        self._product = product_name

    def process_event(self, domain_event: DomainEventProtocol[Any], tracking: Tracking) -> None:
        mail = self.compose(domain_event)
        if mail is not None:
            self._mailer.send(mail)
        self.view.insert_tracking(tracking)

    def compose(self, event: Any) -> OutgoingMail | None:
        key = f"{event.originator_id}:{event.originator_version}"
        if isinstance(event, Account.EmailVerificationRequested):
            link = f"{self._public_url}/verify-email?token={self._box.open(event.sealed_token)}"
            return OutgoingMail(
                key=key,
                to=event.email,
                subject=f"Verify your email address for {self._product}",
                text=(
                    "Hello,\n\nPlease confirm that this is your email address by opening this "
                    f"link:\n\n{link}\n\nThe link works once and expires in "
                    f"{_lifetime(event)}. If you did not sign up for {self._product}, you can "
                    "ignore this message.\n"
                ),
            )
        if isinstance(event, Account.PasswordResetRequested):
            link = f"{self._public_url}/reset-password?token={self._box.open(event.sealed_token)}"
            return OutgoingMail(
                key=key,
                to=event.email,
                subject=f"Reset your {self._product} password",
                text=(
                    "Hello,\n\nSomeone asked to reset the password of your account. To choose a "
                    f"new password, open this link:\n\n{link}\n\nThe link works once and expires "
                    f"in {_lifetime(event)}. Resetting signs you out everywhere. If you did not "
                    "ask for this, ignore this message: your password stays as it is.\n"
                ),
            )
        return None


def _lifetime(event: Any) -> str:
    minutes = int((event.expires_at - event.timestamp).total_seconds() // 60)
    return f"{minutes // 60} hours" if minutes >= 120 else f"{minutes} minutes"
