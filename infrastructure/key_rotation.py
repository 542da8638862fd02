"""Replacing the service's own keys after a compromise (`tessera admin rekey --service-keys`).

A new SECRET_KEY only wraps the stored keys again: after SECRET_KEY and a copy of the store
leaked together, the service keys themselves are known, and must be replaced. `begin` makes a
new version of each (infrastructure/service_keys.py), which takes over a minute later; `advance`,
run by every `tessera admin rekey`, moves what the old versions made to the new one and destroys
the old versions once nothing needs them:

- REFRESH_TAGS and CSRF: a session's refresh token is tagged by the new version at its next
  rotation, a page's CSRF token at its next rendering; old versions verify until the longest a
  token they tagged lives (REFRESH_TOKEN_TTL: a refresh token unused that long has expired, and
  the page session's cookies live as long) has passed since the new version took over.
- SEALED_VALUES: every TOTP secret (enabled, or an enrollment not yet confirmed) still sealed
  under an old version is sealed again under the new one, in an event of its own (events stay
  as they were written); mailed tokens are not: they expire (EMAIL_VERIFICATION_TTL,
  PASSWORD_RESET_TTL). The old versions go once both hold.
- FINGERPRINTS: from the new version's takeover (by when every process claims new values under
  every live version, EventLog.claims_made), each account's email, username and identities are
  claimed anew under it, with a ClaimsRekeyed event on the account; then the old version goes.

Every step is idempotent: a run killed midway is run again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from application.persistence.event_log import ClaimHeld, EventLog, retried_on_conflict
from application.ports import Clock
from domain.account import Account, EmailClaim, IdentityClaim, UsernameClaim
from infrastructure.data_keys import WrappedDataKeys
from infrastructure.keyring import CSRF, FINGERPRINTS, REFRESH_TAGS, SEALED_VALUES
from infrastructure.secret_box import AesGcmBox, sealed_version
from infrastructure.service_keys import TAKE_OVER_AFTER, KeyVersion

log = logging.getLogger(__name__)

ROTATING = (REFRESH_TAGS, CSRF, SEALED_VALUES, FINGERPRINTS)
_BATCH = 500


@dataclass(frozen=True)
class KeyLifetimes:
    """How long what each key made lives (from settings)."""

    refresh_token: timedelta
    mailed_token: timedelta

    def of(self, name: str) -> timedelta:
        if name == FINGERPRINTS:
            return timedelta(0)  # nothing it made expires: it goes once every claim is made anew
        return self.mailed_token if name == SEALED_VALUES else self.refresh_token


@dataclass
class KeyState:
    """Where one key's rotation stands after a run."""

    name: str
    newest: int
    takes_over: datetime
    older: list[int] = field(default_factory=list)  # still live: verify and open only
    retire_at: datetime | None = None  # when the older ones may go (None: no older)
    resealed: int = 0  # TOTP secrets sealed again (or accounts claimed anew) this run
    left: int = 0  # values still under an older version (a conflict: the next run retries)
    destroyed: list[int] = field(default_factory=list)  # versions destroyed this run
    waiting: bool = False  # for the takeover, before moving anything to the newest version

    @property
    def done(self) -> bool:
        return not self.older


class ServiceKeyRotation:
    def __init__(
        self, keys: WrappedDataKeys, log: EventLog, clock: Clock, lifetimes: KeyLifetimes
    ) -> None:
        self._keys = keys
        self._log = log
        self._clock = clock
        self._lifetimes = lifetimes

    def begin(self, names: tuple[str, ...] = ROTATING) -> list[str]:
        """A new version of each named key, unless one is already rotating (a rerun makes
        none): the names it made one for."""
        begun = []
        for name in names:
            if len(self._keys.service_versions(name)) == 1:
                self._keys.add_service_version(name, self._clock.now() + TAKE_OVER_AFTER)
                begun.append(name)
        return begun

    def advance(self, seen: Callable[[int], None] = lambda n: None) -> list[KeyState]:
        """Moves each rotation on as far as it can go now; `seen` hears of each account read."""
        return [self._advance(name, seen) for name in ROTATING]

    def _advance(self, name: str, seen: Callable[[int], None]) -> KeyState:
        versions = self._keys.service_versions(name)
        newest = versions[-1]
        state = KeyState(name, newest.number, newest.takes_over)
        state.older = [v.number for v in versions[:-1]]
        if not state.older:
            return state
        state.retire_at = newest.takes_over + self._lifetimes.of(name)
        if name in (SEALED_VALUES, FINGERPRINTS) and self._clock.now() < newest.takes_over:
            # Not before every process knows the new version: until then one that read the
            # versions a moment before it was made could meet a secret sealed under it, or
            # claim a new value under the old version alone (and the accounts read now would
            # not be all that have claims under the old one alone).
            state.waiting = True
            return state
        if name == SEALED_VALUES:
            state.resealed, state.left = self._reseal_totp_secrets(newest, seen)
        elif name == FINGERPRINTS:
            state.resealed, state.left = self._claim_anew(newest, seen)
        if self._clock.now() >= state.retire_at and state.left == 0:
            for number in state.older:
                self._keys.destroy_service_version(name, number)
            state.destroyed, state.older = state.older, []
        return state

    def _reseal_totp_secrets(
        self, newest: KeyVersion, seen: Callable[[int], None]
    ) -> tuple[int, int]:
        opening = AesGcmBox(self._keys.service_keys(SEALED_VALUES, self._clock.now))
        # Pinned: the newest, should a later rotation have begun since this one's took over.
        sealing = AesGcmBox(_Pinned(newest))
        resealed = left = 0
        for account_id in self._enrolled():
            seen(1)
            try:
                if self._reseal(account_id, newest.number, opening, sealing):
                    resealed += 1
            except IntegrityError:  # lost every race for the account: the next run retries
                left += 1
            except ValueError:  # opens under no version: no TOTP code checks against it either
                log.warning("the TOTP secret of account %s opens under no key", account_id)
        return resealed, left

    @retried_on_conflict
    def _reseal(
        self, account_id: UUID, newest: int, opening: AesGcmBox, sealing: AesGcmBox
    ) -> bool:
        account = self._log.find(account_id, Account)
        if account is None or account.erased:
            return False

        def again(sealed: str | None) -> str | None:
            if sealed is None or sealed_version(sealed)[0] == newest:
                return None
            return sealing.seal(opening.open(sealed))

        if not account.reseal_mfa_secret(
            again(account.mfa_sealed_secret),
            again(account.mfa_pending_sealed_secret),
            self._clock.now(),
        ):
            return False
        self._log.save(account)
        return True

    def _claim_anew(self, newest: KeyVersion, seen: Callable[[int], None]) -> tuple[int, int]:
        rekeyed = left = 0
        for account_id in self._accounts(get_topic(Account.Registered)):
            seen(1)
            try:
                if self._claims_of(account_id, newest.number):
                    rekeyed += 1
            except IntegrityError:  # lost every race, or the value is held by another account
                left += 1
        return rekeyed, left

    @retried_on_conflict
    def _claims_of(self, account_id: UUID, newest: int) -> bool:
        """The account's values claimed under the newest version of the key, where they are
        not yet; False when there was nothing to claim."""
        account = self._log.find(account_id, Account)
        if account is None or account.erased:
            return False
        values: list[tuple[Any, str, str]] = [
            (EmailClaim, "email", account.email),
            (UsernameClaim, "username", account.username),
            *(
                (IdentityClaim, "identity", f"{identity.provider}:{identity.subject}")
                for identity in account.identity_list()
            ),
        ]
        now = self._clock.now()
        made: list[Any] = []
        for kind, what, value in values:
            fingerprint = self._log.keys.fingerprints(what, value)[0]
            if not fingerprint.startswith(f"{newest}:"):
                raise RuntimeError(f"this process does not know version {newest} of the key")
            latest = self._log.latest_claim(kind, fingerprint)
            if latest is not None and latest.held:
                if latest.account_id != account.id:
                    log.error("account %s's %s is claimed by another account", account.id, what)
                    raise ClaimHeld(what)
                continue
            made.append(kind.made(fingerprint, account.id, now, after=latest))
        if not made:
            return False
        account.claims_rekeyed(newest, now)
        self._log.save(account, *made)
        return True

    def _enrolled(self) -> Iterator[UUID]:
        """Each account that ever started a TOTP enrollment, once."""
        return self._accounts(get_topic(Account.MfaEnrollmentStarted))  # type: ignore[attr-defined]

    def _accounts(self, topic: str) -> Iterator[UUID]:
        """Each account with an event of the topic, once, up to the log's end when the read
        began. Read until a page comes back empty: while a save is in flight a page is only the
        settled prefix (infrastructure/event_store.py), short though more follows; end() waits
        for such saves, so every page up to it is whole."""
        seen: set[UUID] = set()
        last = self._log.end()
        start: int | None = None
        while True:
            batch = self._log.recorder.select_notifications(
                start, _BATCH, stop=last, topics=[topic], inclusive_of_start=start is None
            )
            if not batch:
                return
            for notification in batch:
                account_id = UUID(str(notification.originator_id))
                if account_id not in seen:
                    seen.add(account_id)
                    yield account_id
            start = batch[-1].id


class _Pinned:
    """The newest version as the one to seal under, before it takes over for everyone."""

    def __init__(self, version: KeyVersion) -> None:
        self._version = version

    def current(self) -> tuple[int, bytes]:
        return self._version.number, self._version.key

    def version(self, number: int) -> bytes | None:
        return self._version.key if number == self._version.number else None
