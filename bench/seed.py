"""Seeding accounts through the application layer, fast: Account aggregates made by their own
command methods with one precomputed argon2 hash, saved with their email and username claims
in large atomic batches (one `EventLog.save` of many aggregates), not through HTTP.

Each seeded account is what a registration and a verified email leave behind: `Registered`,
`EmailVerificationRequested`, `EmailVerified`, plus `EmailClaimed` and `UsernameClaimed`.
Usernames are user0, user1, ..., emails user<n>@bench.test, all with the same password.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from application.tokens import digest, issue_token
from domain.account import Account, EmailClaim, UsernameClaim
from infrastructure.keys import load_secret_key
from infrastructure.passwords import Argon2Hasher, Argon2Parameters
from infrastructure.secret_box import AesGcmBox
from interfaces.container import Container
from interfaces.progress import progress
from interfaces.settings import Settings

PASSWORD = "bench password for every seeded account"
_BATCH = 500


def password_hash(settings: Settings) -> str:
    """The one argon2 hash every seeded account shares, made with the settings' parameters."""
    parameters = Argon2Parameters(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
    )
    return Argon2Hasher(parameters).hash(PASSWORD)


def username(n: int) -> str:
    return f"user{n}"


def seed_accounts(container: Container, start: int, stop: int, password_hash: str) -> float:
    """Seeds accounts start .. stop-1; returns the seconds it took."""
    began = time.perf_counter()
    settings = container.settings
    box = AesGcmBox(load_secret_key(settings.secret_key, settings.data_path / "secret.key"))
    ttl = timedelta(seconds=settings.email_verification_ttl)
    with progress("seed accounts", stop - start, "accounts") as advance:
        for first in range(start, stop, _BATCH):
            _seed_batch(container, box, ttl, first, min(first + _BATCH, stop), password_hash)
            advance(min(first + _BATCH, stop) - first)
    return time.perf_counter() - began


def _seed_batch(
    container: Container, box: AesGcmBox, ttl: timedelta, first: int, stop: int, password_hash: str
) -> None:
    """One atomic save of accounts first .. stop-1 with their claims."""
    batch: list[Any] = []
    fingerprint = container.log.keys.fingerprint  # claims are named by keyed hashes
    for n in range(first, stop):
        now = container.clock.now()
        name = username(n)
        email = f"{name}@bench.test"
        account = Account(email=email, username=name, password_hash=password_hash, timestamp=now)
        token = issue_token(account.id)
        account.request_email_verification(
            token_hash=digest(token), sealed_token=box.seal(token), at=now, ttl=ttl
        )
        account.verify_email(digest(token), at=now)
        owned: dict[str, Any] = {"account_id": account.id, "timestamp": now}
        batch += [
            account,
            EmailClaim(id=EmailClaim.id_for(fingerprint("email", email)), **owned),
            UsernameClaim(id=UsernameClaim.id_for(fingerprint("username", name)), **owned),
        ]
    container.log.save(*batch)


def drain_mail(container: Container) -> None:
    """The embedded default projects and mails in `tessera serve` itself: deliver the seeded
    accounts' verification mails beforehand, so that work does not run during a measurement."""
    container.mail_broker.start_worker(container.settings.worker_threads)
    for projector in container.projectors:
        while projector.run_once():
            pass
    container.mail_broker.join(timeout_ms=300_000)
