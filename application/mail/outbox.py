"""Mail derived from events: which events mail whom, with what, and how each is delivered.

Two halves. The outbox projection records one delivery per mail-worthy event in the ledger, in
the same transaction as its tracking record, then asks the queue to deliver it. The postman, in a
worker, claims a delivery, rebuilds the mail from its event, sends it, and closes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic
from opentelemetry import propagate, trace

from application.persistence.event_log import EventLog
from application.ports import (
    Clock,
    MailDrop,
    MailQueue,
    MailRenderer,
    MailTransport,
    OutgoingMail,
    PendingMail,
    SecretBox,
)
from domain.account import Account
from domain.session import Session
from domain.webhook import WebhookEndpoint

tracer = trace.get_tracer("tessera.mail")
log = logging.getLogger(__name__)

# A notice for every change to the ways into an account (ASVS 5.0 V6.3: users are notified after
# updates to their authentication details): what changed, when, from where, and how to react.
NOTICES: dict[type[Any], str] = {
    Account.PasswordChanged: "password_changed",
    Account.MfaEnabled: "mfa_enabled",
    Account.MfaDisabled: "mfa_disabled",
    Account.RecoveryCodesRenewed: "recovery_codes_renewed",
    Account.PasskeyRegistered: "passkey_added",
    Account.PasskeyRemoved: "passkey_removed",
    Account.IdentityLinked: "identity_linked",
    Account.IdentityUnlinked: "identity_unlinked",
}
# Each mail-worthy event and the kind of mail it makes (its templates' name).
MAIL_KINDS: dict[type[Any], str] = {
    Account.EmailVerificationRequested: "verification",
    Account.PasswordResetRequested: "password_reset",
    Account.AccountLocked: "account_locked",
    Session.SessionStarted: "new_sign_in",
    **NOTICES,
}
MAIL_WORTHY = tuple(MAIL_KINDS)
# A webhook endpoint the service itself turned off (410 Gone, five days of failures): every
# admin is told, since the system behind it no longer hears of anything.
TO_ADMINS: dict[type[Any], str] = {WebhookEndpoint.EndpointDisabled: "webhook_disabled"}


class MailLedger(Protocol):
    """Where deliveries are recorded (with the projection's position) and claimed."""

    def record(self, mail: PendingMail, at: datetime, tracking: Tracking | None) -> None: ...

    def claim(self, key: str, at: datetime, ttl: timedelta) -> PendingMail | None: ...

    def extend(self, key: str, until: datetime) -> None: ...

    def close_delivery(self, key: str, status: str, at: datetime) -> None: ...

    def release(self, key: str, at: datetime) -> None: ...

    def stale(self, at: datetime, older_than: timedelta) -> list[str]: ...

    def unclaimed(self) -> list[str]: ...

    def keys_of(self, account_id: UUID) -> list[str]: ...

    def counts(self) -> dict[str, int]: ...


def delivery_key(event: DomainEventProtocol[Any]) -> str:
    """The idempotency key: an event's identity, so one event makes at most one mail."""
    return f"{event.originator_id}-{event.originator_version}"


def account_of(event: DomainEventProtocol[Any]) -> UUID:
    """Whose mail an event makes: a sign-in's is its account's, the rest are the account's own."""
    account_id: UUID = (
        event.account_id if isinstance(event, Session.SessionStarted) else event.originator_id
    )
    return account_id


class MailOutbox:
    name = "mail_outbox"
    topics: tuple[str, ...] = tuple(get_topic(kind) for kind in (*MAIL_WORTHY, *TO_ADMINS))

    def __init__(
        self,
        view: Any,
        queue: MailQueue,
        clock: Clock,
        notify_sign_ins: bool = True,
        admins: Callable[[], Iterable[UUID]] = list,
    ) -> None:
        """`admins`: the accounts that hold the admin role now."""
        self._admins = admins
        self._ledger: MailLedger = view
        self._view: TrackingRecorder = view
        self._queue = queue
        self._clock = clock
        self._notify_sign_ins = notify_sign_ins

    @property
    def view(self) -> TrackingRecorder:
        return self._view

    def process_events(
        self, events: Sequence[tuple[DomainEventProtocol[Any], int]], tracking: Tracking
    ) -> None:
        # One transaction a mail, each with its own event's position: a mail is enqueued after
        # its row commits, so a crash resumes after the last mail recorded, never re-sends one.
        last = None
        for domain_event, position in events:
            self.process_event(domain_event, Tracking(tracking.application_name, position))
            last = position
        if last != tracking.notification_id:
            self._view.insert_tracking(tracking)

    def process_event(self, domain_event: DomainEventProtocol[Any], tracking: Tracking) -> None:
        if isinstance(domain_event, Session.SessionStarted) and not self._notify_sign_ins:
            self._view.insert_tracking(tracking)
            return
        if type(domain_event) in TO_ADMINS:
            self._to_admins(domain_event, tracking)
            return
        pending = PendingMail(
            delivery_key(domain_event),
            domain_event.originator_id,
            domain_event.originator_version,
            account_of(domain_event),
        )
        self._ledger.record(pending, self._clock.now(), tracking)
        self._enqueue(domain_event, pending)

    def _to_admins(self, domain_event: DomainEventProtocol[Any], tracking: Tracking) -> None:
        """One mail per admin, each with its own key; the event's position is tracked with the
        last (an operator's own change tells nobody: they know)."""
        admins = [] if getattr(domain_event, "operator", None) else list(self._admins())
        if not admins:
            self._view.insert_tracking(tracking)
            return
        for admin_id in admins:
            pending = PendingMail(
                f"{delivery_key(domain_event)}-{admin_id}",
                domain_event.originator_id,
                domain_event.originator_version,
                admin_id,
            )
            last = admin_id == admins[-1]
            self._ledger.record(pending, self._clock.now(), tracking if last else None)
            self._enqueue(domain_event, pending)

    def _enqueue(self, domain_event: DomainEventProtocol[Any], pending: PendingMail) -> None:
        # The mail continues the trace of the request that recorded the event.
        parent = propagate.extract(getattr(domain_event, "trace_context", None) or {})
        with tracer.start_as_current_span(
            "mail.enqueue", context=parent, kind=trace.SpanKind.PRODUCER
        ):
            # After the commit: a message without its row can never exist. A crash (or a
            # broker that refused) between the two leaves a queued row; resume() sends it.
            self._queue.enqueue(pending.key)

    def resume(self) -> None:
        """Called by the projector before it reads on, each time it takes this projection (at
        start, or from a holder that died) and after a failure: the last rows recorded may
        have missed their message, so every row no worker has claimed yet is enqueued again.
        A duplicate is harmless (a delivery is claimed once); a missing message is a lost mail.
        """
        keys = self._ledger.unclaimed()
        for key in keys:
            self._queue.enqueue(key)
        if keys:
            log.info("mail outbox resumed: %s unclaimed deliveries enqueued again", len(keys))

    def redeliver_stale(self, older_than: timedelta) -> int:
        """Enqueues again what no message may still carry (lost with a crash, or with a broker
        that kept it in memory only). Duplicates are harmless: a delivery is claimed once."""
        keys = self._ledger.stale(self._clock.now(), older_than)
        for key in keys:
            self._queue.enqueue(key)
        return len(keys)


@dataclass(frozen=True)
class MailSettings:
    public_url: str
    product_name: str
    # A claim runs out this long after its holder last renewed it: how soon another worker
    # may take the mail of one that died in the middle of sending it.
    claim_ttl: timedelta = timedelta(seconds=15)
    # Renewals stop this long after the claim was taken: longer than any one SMTP conversation
    # can last, so a live conversation keeps its claim and a hung one does not keep it forever.
    longest_send: timedelta = timedelta(seconds=65)


class Postman:
    """Delivers one recorded mail. Runs in workers; safe to call twice with one key."""

    def __init__(
        self,
        log: EventLog,
        ledger: MailLedger,
        renderer: MailRenderer,
        transport: MailTransport,
        box: SecretBox,
        clock: Clock,
        settings: MailSettings,
        drop: MailDrop | None = None,
    ) -> None:
        self._log = log
        self._ledger = ledger
        self._renderer = renderer
        self._transport = transport
        self._box = box
        self._clock = clock
        self._settings = settings
        self._drop = drop  # where sent mail stays (the transport itself), if it stays

    def deliver(self, key: str) -> str | None:
        """Sends the mail unless it was sent already; returns its kind, or None if it was.

        Raises DeliveryBusy while another worker holds it, and the transport's errors after
        putting the delivery back in the queue, so the caller's retry policy decides.
        """
        claimed_at = self._clock.now()
        pending = self._ledger.claim(key, claimed_at, self._settings.claim_ttl)
        if pending is None:
            return None
        try:
            with self._claim_kept(key, claimed_at):
                composed = self.compose(pending)
                if composed is not None:
                    self._transport.send(composed[1])
        except BaseException:
            self._ledger.release(key, self._clock.now())
            raise
        if composed is None:
            # Its person was erased since (the mail would carry an address that is forgotten),
            # or it is a notice of nothing to notice.
            self._ledger.close_delivery(key, "skipped", self._clock.now())
            return None
        if self._drop is not None and self._log.find(composed[2], Account) is None:
            # Erased while the file was written: the erasure, which removed the person's
            # files from after its commit, may have looked before this one existed.
            self._drop.remove([key])
            self._ledger.close_delivery(key, "skipped", self._clock.now())
            return None
        self._ledger.close_delivery(key, "sent", self._clock.now())
        return composed[0]

    def forget(self, account_id: UUID) -> None:
        """Removes the person's mails from the drop (part of their erasure). Idempotent."""
        if self._drop is not None:
            self._drop.remove(self._ledger.keys_of(account_id))

    @contextmanager
    def _claim_kept(self, key: str, claimed_at: datetime) -> Iterator[None]:
        """Renews the claim every third of its life while the block runs, up to longest_send."""
        ttl, done = self._settings.claim_ttl, threading.Event()
        last = claimed_at + self._settings.longest_send

        def renew() -> None:
            while not done.wait(ttl.total_seconds() / 3):
                until = min(self._clock.now() + ttl, last)
                try:
                    self._ledger.extend(key, until)
                except Exception:  # the ledger away: the next renewal may reach it
                    log.warning("could not renew the claim on mail %s", key, exc_info=True)
                if until >= last:
                    return

        keeper = threading.Thread(target=renew, name=f"claim-{key}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()

    def give_up(self, key: str) -> None:
        """The last try failed: the message goes to the dead-letter queue, the row says so."""
        self._ledger.close_delivery(key, "dead", self._clock.now())

    def compose(self, pending: PendingMail) -> tuple[str, OutgoingMail, UUID] | None:
        """The mail's kind, content and account; None when its account has been erased, or
        when the event is not news to anyone."""
        (event,) = self._log.events.get(
            pending.originator_id,
            gt=pending.originator_version - 1,
            lte=pending.originator_version,
        )
        to_admin = type(event) in TO_ADMINS and pending.account_id is not None
        account_id = pending.account_id if to_admin else account_of(event)
        assert account_id is not None
        if self._log.find(account_id, Account) is None:
            return None
        content = self._to_admin(event, account_id) if to_admin else self._content(event)
        if content is None:
            return None
        kind, to, context = content
        url = self._settings.public_url.rstrip("/")
        context = {
            "product": self._settings.product_name,
            # Links come from configuration, never from a request's Host header.
            "reset_link": f"{url}/forgot-password",
            "account_link": f"{url}/account",
            **context,
        }
        subject, text, html = self._renderer.render(kind, context)
        mail = OutgoingMail(key=pending.key, to=to, subject=subject, text=text, html=html)
        return kind, mail, account_id

    def _opened(self, sealed: str) -> str | None:
        """A mailed token, or None once the key version that sealed it is destroyed (after a
        compromise, no sooner than the token's own expiry): a dead link is not sent."""
        try:
            return self._box.open(sealed)
        except ValueError:
            log.warning("a mailed token opens under no key: its mail is not sent")
            return None

    def _content(self, event: Any) -> tuple[str, str, dict[str, Any]] | None:
        url = self._settings.public_url.rstrip("/")
        if isinstance(event, Account.EmailVerificationRequested):
            token = self._opened(event.sealed_token)
            if token is None:
                return None
            link = f"{url}/verify-email?token={token}"
            return "verification", event.email, {"link": link, "expires": _span(event)}
        if isinstance(event, Account.PasswordResetRequested):
            token = self._opened(event.sealed_token)
            if token is None:
                return None
            link = f"{url}/reset-password?token={token}"
            return "password_reset", event.email, {"link": link, "expires": _span(event)}
        if isinstance(event, Session.SessionStarted):
            account = self._account(event.account_id, None)
            origin = {"ip": event.ip, "user_agent": event.user_agent}
            return "new_sign_in", account.email, _notice(event, account, origin)
        # The rest are the account's own events: mail the address it had then.
        account = self._account(event.originator_id, event.originator_version)
        if isinstance(event, Account.AccountLocked):
            context = {
                "until": getattr(event, "until", None),
                "by_operator": getattr(event, "operator", None) is not None,
            }
            return "account_locked", account.email, context
        if isinstance(event, Account.IdentityLinked) and self._made_with(event):
            return None  # an account made by a provider sign-in: no news to its person
        context = _notice(event, account, getattr(event, "client", None) or {})
        if isinstance(event, Account.PasskeyRegistered):
            context["passkey"] = event.passkey_name
        elif isinstance(event, Account.PasskeyRemoved):
            before = self._account(event.originator_id, event.originator_version - 1)
            context["passkey"] = before.passkey(event.credential_id).name
        elif isinstance(event, Account.IdentityLinked | Account.IdentityUnlinked):
            context["provider"] = event.provider
        return NOTICES[type(event)], account.email, context

    def _to_admin(self, event: Any, admin_id: UUID) -> tuple[str, str, dict[str, Any]] | None:
        admin = self._account(admin_id, None)
        if "admin" not in admin.roles or admin.disabled:
            return None  # no longer an admin: no longer told
        endpoint: Any = self._log.repository.get(
            event.originator_id, version=event.originator_version
        )
        context = {
            "at": event.timestamp,
            "url": endpoint.settings.url,
            "endpoint_id": str(event.originator_id),
            "gone": event.reason == "gone",
            "admin_link": f"{self._settings.public_url.rstrip('/')}/api/admin/webhooks/{event.originator_id}",
        }
        return TO_ADMINS[type(event)], admin.email, context

    def _made_with(self, linked: Any) -> bool:
        """Whether the account was made with this identity: before it, it had no way in."""
        before = self._account(linked.originator_id, linked.originator_version - 1)
        return before.ways_in_without(linked.identity_id) == 0

    def _account(self, account_id: Any, version: int | None) -> Account:
        account: Any = self._log.repository.get(account_id, version=version)
        assert isinstance(account, Account)
        return account


def _notice(event: Any, account: Account, origin: dict[str, Any]) -> dict[str, Any]:
    """What every notice says besides its change: when, from where (the request's client, as
    recorded with the event), and how to react (a password to reset, or none to reset)."""
    return {
        "at": event.timestamp,
        "ip": origin.get("ip") or "",
        "user_agent": origin.get("user_agent") or "",
        "has_password": account.has_password,
    }


def _span(event: Any) -> str:
    minutes = int((event.expires_at - event.timestamp).total_seconds() // 60)
    return f"{minutes // 60} hours" if minutes >= 120 else f"{minutes} minutes"
