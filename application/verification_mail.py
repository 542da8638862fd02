"""Turns recorded verification requests into mails: a tracked projection, resumable after a crash."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from application.ports import Mailer, OutgoingMail, SecretBox
from domain.account import Account


class VerificationMail:
    """Sends one mail per EmailVerificationRequested event.

    The mail's idempotency key is the event's identity, so an event processed again after a crash
    (sent, but not yet tracked) is delivered once. Only then is the position tracked.
    """

    name = "verification_mail"
    topics: tuple[str, ...] = (get_topic(Account.EmailVerificationRequested),)

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
        self._product_name = product_name

    def process_event(self, domain_event: DomainEventProtocol[Any], tracking: Tracking) -> None:
        if isinstance(domain_event, Account.EmailVerificationRequested):
            self._mailer.send(self.compose(domain_event))
        self.view.insert_tracking(tracking)

    def compose(self, requested: Any) -> OutgoingMail:
        token = self._box.open(requested.sealed_token)
        # The link is built from configuration, never from a request's Host header, which an
        # attacker controls (host header poisoning of the verification link).
        link = f"{self._public_url}/verify-email?token={token}"
        hours = int((requested.expires_at - requested.timestamp).total_seconds() // 3600)
        return OutgoingMail(
            key=f"{requested.originator_id}:{requested.originator_version}",
            to=requested.email,
            subject=f"Verify your email address for {self._product_name}",
            text=(
                f"Hello,\n\nPlease confirm that this is your email address by opening this link:\n\n"
                f"{link}\n\nThe link works once and expires in {hours} hours. If you did not sign "
                f"up for {self._product_name}, you can ignore this message.\n"
            ),
        )
