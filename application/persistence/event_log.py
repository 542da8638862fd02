"""The event-sourced application: the one place aggregates are loaded and saved."""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, ParamSpec, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    JSONTranscoder,
    Mapper,
    OperationalError,
    Recording,
    Transcoder,
)
from eventsourcing.utils import get_topic
from opentelemetry import propagate, trace

from application.origin import current_caller, current_client
from application.persistence.sealing import OWNER, SealedAsText, SealingMapper
from application.persistence.transcoding import FastJSONTranscoder
from application.ports import ChangeMarks, DataKeys, Unavailable
from domain.account import Account, EmailClaim, IdentityClaim, UsernameClaim
from domain.client import ClientDirectory
from domain.errors import Invalid
from domain.identity import is_email, normalise_email, normalise_username
from domain.session import Session

A = TypeVar("A", bound=Aggregate)
C = TypeVar("C", EmailClaim, UsernameClaim, IdentityClaim)
P = ParamSpec("P")
R = TypeVar("R")

tracer = trace.get_tracer("tessera.application")
log = logging.getLogger(__name__)

CONFLICT_ATTEMPTS = 12
# How long a whole read waits for the saves in flight before it would stop short (EventLog.end).
END_WAIT = 5.0
_ERASED_TOPIC = get_topic(Account.AccountErased)
_BACKOFF_SECONDS = 0.002


class SaveObserver(Protocol):
    def saved(self, events: list[DomainEventProtocol[Any]], seconds: float) -> None:
        """Told of every successful save: the events it recorded and how long it took."""
        ...


# What the persistence library raises when the database does not answer (after its own retries),
# as opposed to what it raises when the database refuses (IntegrityError: a lost race).
OUTAGE_ERRORS = (OperationalError, InterfaceError)


class Outage:
    """Fails fast while the event store (and so its database) is known to be unreachable.

    The persistence library retries each read and write for seconds before it gives up: right for
    one dropped connection, wrong for a stopped server, where every request would hang that long
    and then fail. After one failure, requests are refused at once (Unavailable: a 503 with
    Retry-After) while one background probe waits for the store to answer again.
    """

    def __init__(self, probe: Callable[[], object], interval: float = 0.5) -> None:
        self._probe = probe
        self._interval = interval
        self._down = threading.Event()
        self._lock = threading.Lock()
        self._prober: int | None = None  # the probe's thread, which alone may still try

    @property
    def down(self) -> bool:
        return self._down.is_set()

    def check(self) -> None:
        if self._down.is_set() and threading.get_ident() != self._prober:
            raise Unavailable("event store")

    def failed(self, error: Exception) -> None:
        with self._lock:
            if self._down.is_set():
                return
            self._down.set()
        log.error("the event store is unreachable (%s); refusing requests until it answers", error)
        threading.Thread(
            target=self._wait_for_recovery, name="event-store-probe", daemon=True
        ).start()

    def _wait_for_recovery(self) -> None:
        self._prober = threading.get_ident()
        while True:
            time.sleep(self._interval)
            try:
                self._probe()
            except OUTAGE_ERRORS:
                continue
            except Exception:
                log.exception("the event store probe failed unexpectedly; probing again")
                continue
            self._down.clear()
            log.warning("the event store answers again")
            return


class EventLog(Application[UUID]):
    """Every account's history. Optimistic concurrency on every save; snapshots keep loads short."""

    name = "Tessera"
    # Snapshots bound the events replayed on load, so an account with years of history (failed
    # logins, profile edits) and a long-lived session loads about as fast as a new one.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Account: 50,
        Session: 50,
        ClientDirectory: 50,
    }

    def __init__(
        self, keys: DataKeys, env: Any = None, observers: Sequence[SaveObserver] = ()
    ) -> None:
        self.keys = keys  # before the library's constructor, which makes the mapper
        super().__init__(env)
        self.observers = list(observers)
        self.outage = Outage(probe=self.recorder.max_notification_id)
        self._marks: ChangeMarks | None = None

    def announce_to(self, marks: ChangeMarks) -> None:
        """Every save from now on marks the accounts it changes there (see ChangeMarks), so
        other processes' copies are never trusted past it, and records how far it reached."""
        self._marks = marks

    def construct_mapper(self) -> Mapper[UUID]:
        """Every event and snapshot goes through the sealing mapper: personal values are stored
        sealed under their person's data key (application.persistence.sealing)."""
        plain: Mapper[UUID] = self.factory.mapper(transcoder=self.construct_transcoder())
        return SealingMapper(plain.transcoder, self.keys, plain.compressor, plain.cipher)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(SealedAsText())

    def construct_transcoder(self) -> Transcoder:
        """The library's JSON format, decoded faster (application.persistence.transcoding); a transcoder
        chosen by TRANSCODER_TOPIC is left as it is."""
        transcoder = self.factory.transcoder()
        if type(transcoder) is JSONTranscoder:
            transcoder = FastJSONTranscoder()
        if isinstance(transcoder, JSONTranscoder):
            self.register_transcodings(transcoder)
        return transcoder

    def _guarded(self, operation: Callable[[], R]) -> R:
        """Runs a read or write of the store; an unreachable store becomes Unavailable."""
        self.outage.check()
        try:
            return operation()
        except OUTAGE_ERRORS as error:
            self.outage.failed(error)
            raise Unavailable("event store") from error

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Saves atomically, then tells the observers (metrics) what was recorded.

        Each event carries the W3C trace context it was recorded in, so work that follows from
        it elsewhere (a mail sent by a worker) joins the request's trace, and the client the
        request came from, for the audit trail.
        """
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        client = current_client.get()
        origin = {"ip": client.ip, "user_agent": client.user_agent} if client else None
        for aggregate in objs:
            owner = _owner(aggregate)
            for pending in getattr(aggregate, "pending_events", ()):
                if carrier:
                    object.__setattr__(pending, "trace_context", carrier)
                # Where the command came from, for the audit trail: metadata, not domain state.
                # Only where a data key can seal it: a claim an erasure releases names no
                # account any more (and claims are bookkeeping, not history).
                if origin and owner is not None and not hasattr(pending, "client"):
                    object.__setattr__(pending, "client", origin)
                # Whose data key seals its personal values (application.persistence.sealing).
                object.__setattr__(pending, OWNER, owner)
        changing = [a for a in objs if isinstance(a, Account) and a.pending_events]
        with tracer.start_as_current_span("event_store.save"):
            started = time.perf_counter()
            # An account this save creates has no copies anywhere yet: nothing to mark first.
            existing = [a.id for a in changing if a.pending_events[0].originator_version > 1]
            marks = self._marks if existing else None
            token = marks.changing(existing) if marks else ""
            recordings = self._guarded(lambda: super(EventLog, self).save(*objs, **kwargs))
            elapsed = time.perf_counter() - started
            if self._marks is not None and recordings:
                self._announce(token, changing, objs, recordings)
        for observer in self.observers:
            observer.saved([r.domain_event for r in recordings], elapsed)
        return recordings

    def _announce(
        self,
        token: str,
        changed: list[Account],
        objs: tuple[Any, ...],
        recordings: list[Recording[UUID]],
    ) -> None:
        assert self._marks is not None
        position = max(r.notification.id for r in recordings)
        principals = {
            o.id if isinstance(o, Account) else o.account_id
            for o in objs
            if isinstance(o, Account | Session)
        }
        caller = current_caller.get()
        if caller is not None and caller.account_id is not None:
            principals.add(caller.account_id)
        try:
            self._marks.changed(
                token, {a.id: a.version for a in changed}, dict.fromkeys(principals, position)
            )
        except Unavailable:
            # Committed, so the command succeeded. The "changing" mark stays until it expires:
            # other processes reload these accounts meanwhile, so none serves an old copy.
            log.warning("could not mark accounts as changed; their marks expire instead")

    def find(self, aggregate_id: UUID | None, kind: type[A]) -> A | None:
        """The aggregate, or None when there is none of that kind with that id. An erased
        account is none: every use case answers for it as for an unknown one.

        The kind check matters for security: a token naming an Account must never load as a Session.
        """
        if aggregate_id is None:
            return None
        try:
            aggregate: Aggregate = self._guarded(lambda: self.repository.get(aggregate_id))
        except AggregateNotFoundError:
            return None
        if not isinstance(aggregate, kind) or getattr(aggregate, "erased", False):
            return None
        return aggregate

    def email_claim(self, email: str) -> EmailClaim | None:
        """The claim on a normalised email address, held or released; None if never made."""
        return self.claim_of(EmailClaim, "email", email)

    def username_claim(self, username: str) -> UsernameClaim | None:
        """The claim on a normalised username, held or released; None if never made."""
        return self.claim_of(UsernameClaim, "username", username)

    def identity_claim(self, provider: str, subject: str) -> IdentityClaim | None:
        """The claim on a provider's subject, held or released; None if never made."""
        return self.claim_of(IdentityClaim, "identity", f"{provider}:{subject}")

    # Claims by key version. While the fingerprint key is being replaced (after a compromise),
    # a value is claimed under each live version's fingerprint: every process knows the oldest
    # (it goes only once every process has read the newest), so two registrations of one value
    # race for one aggregate id whichever versions each knows. A lookup takes a held claim under
    # any version; `tessera admin rekey` claims each older account's values under the newest.

    def claim_of(self, kind: type[C], what: str, value: str) -> C | None:
        """The value's claim held under any live version of the key (the newest first), else
        the newest version's latest released one; None if never made."""
        found = [self.latest_claim(kind, fp) for fp in self.keys.fingerprints(what, value)]
        held = next((claim for claim in found if claim is not None and claim.held), None)
        return held or next((claim for claim in found if claim is not None), None)

    def claims_made(
        self, kind: type[C], what: str, value: str, account_id: UUID, at: datetime
    ) -> list[C]:
        """The value's claims for `account_id` under each live version of the key: each the
        first, or the next generation after its version's released one. ClaimHeld when a
        version's latest is held (by anyone: the caller checked it was not its own)."""
        made = []
        for fingerprint in self.keys.fingerprints(what, value):
            latest = self.latest_claim(kind, fingerprint)
            if latest is not None and latest.held:
                raise ClaimHeld(what)
            made.append(kind.made(fingerprint, account_id, at, after=latest))
        return made

    def claims_held(self, kind: type[C], what: str, value: str, account_id: UUID) -> list[C]:
        """The value's claims `account_id` holds, under every live version of the key."""
        return [
            claim
            for fingerprint in self.keys.fingerprints(what, value)
            if (claim := self.latest_claim(kind, fingerprint)) is not None
            and claim.account_id == account_id
        ]

    def latest_claim(self, kind: type[C], fingerprint: str) -> C | None:
        """The value's claim of the latest generation: the held one, or the last released (whose
        next generation a new holder makes); None if never made. One read for a value never
        released, one more for each release since."""
        latest = None
        generation = 0
        while (claim := self.find(kind.id_for(fingerprint, generation), kind)) is not None:
            if claim.held:
                return claim
            latest, generation = claim, generation + 1
        return latest

    def account_for_login(self, login: str) -> Account | None:
        """The account whose email or username this is (either spelling case), or None."""
        claim: EmailClaim | UsernameClaim | None
        try:
            if is_email(login):
                claim = self.email_claim(normalise_email(login))
            else:
                claim = self.username_claim(normalise_username(login))
        except Invalid:
            return None  # a login that cannot exist is just an unknown login
        if claim is None or claim.account_id is None:
            return None
        return self.find(claim.account_id, Account)

    def account_named(self, reference: str) -> Account | None:
        """The account whose id, email or username this is, or None. An id is tried first; 32
        hex digits are both a UUID and a possible username, so a miss falls through."""
        with contextlib.suppress(ValueError):
            account = self.find(UUID(reference), Account)
            if account is not None:
                return account
        return self.account_for_login(reference)

    def erasure_recorded(self, account_id: UUID) -> bool | None:
        """Whether the log records the account's erasure (read from the stored events' topics,
        so no key is asked); None when the log holds no such account."""
        stored = self._guarded(lambda: self.recorder.select_events(account_id))
        if not stored:
            return None
        return any(event.topic == _ERASED_TOPIC for event in stored)

    def erased_at(self, position: int, account_id: UUID) -> bool:
        """Whether the log's event at `position` is the account's AccountErased: one indexed
        read. A log restored from a backup older than that event has another one there, or
        none."""
        found = self._guarded(lambda: self.recorder.select_notifications(position, 1))
        return bool(
            found
            and found[0].id == position
            and UUID(str(found[0].originator_id)) == account_id
            and found[0].topic == _ERASED_TOPIC
        )

    def exists(self, aggregate_id: UUID) -> bool:
        return self._guarded(lambda: aggregate_id in self.repository)

    def last_recorded(self) -> int:
        """The last position recorded, whether or not every event before it can be read yet
        (see `end`): where a writer that had the log to itself knows its own writes end."""
        last_recorded = getattr(self.recorder, "last_recorded_id", None)
        if last_recorded is None:  # a store whose positions are all readable once committed
            return self.recorder.max_notification_id() or 0
        return int(last_recorded())

    def end(self, wait: float = END_WAIT) -> int:
        """Where a read of the whole log ends: the last position recorded, once every event up
        to it can be read. Saves in flight settle in milliseconds; should something still hold
        an event back after `wait` seconds, a reader would stop short of the log's end, and
        that is an error naming the position, never a silently shorter read."""
        recorder = self.recorder
        readable: int = recorder.max_notification_id() or 0
        recorded = self.last_recorded()
        deadline = time.monotonic() + wait
        while readable < recorded and time.monotonic() < deadline:
            time.sleep(0.01)
            readable = recorder.max_notification_id() or 0
        if readable < recorded:
            raise LogHeldBack(readable, recorded)
        return recorded


class ClaimHeld(IntegrityError):
    """A value's claim is held (under some version of the fingerprint key): taken, as a lost
    race for its aggregate id would say."""


class LogHeldBack(Exception):
    """Events up to `recorded` are in the log, but only those up to `readable` can be read: a
    transaction still running holds the others back (or their transaction ids came from
    another cluster and the store was not opened by tessera since)."""

    def __init__(self, readable: int, recorded: int) -> None:
        super().__init__(
            f"the event log holds positions up to {recorded}, but nothing past {readable} can "
            f"be read yet: a transaction still running (or a transaction id copied from another "
            f"cluster) holds position {readable + 1} back"
        )
        self.readable = readable
        self.recorded = recorded


def _owner(aggregate: Any) -> UUID | None:
    """The account an aggregate's events belong to: its own id, or the one it names."""
    if isinstance(aggregate, Account):
        return aggregate.id
    owner = getattr(aggregate, "account_id", None)
    return owner if isinstance(owner, UUID) else None


def retried_on_conflict(command: Callable[P, R]) -> Callable[P, R]:
    """Reruns a command that lost an optimistic-concurrency race.

    Only for commands that reload everything they decide on, so a rerun decides afresh on the
    winner's state; never for ones whose conflict is the answer (a taken email).
    """

    @functools.wraps(command)
    def rerun(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(1, CONFLICT_ATTEMPTS):
            try:
                return command(*args, **kwargs)
            except IntegrityError:
                # Jittered, growing waits, so writers that collided do not collide again in step.
                time.sleep(random.uniform(0, _BACKOFF_SECONDS * 2 ** min(attempt, 6)))
        return command(*args, **kwargs)

    return rerun
