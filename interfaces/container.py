"""The composition root: builds the object graph from settings. The only module that does."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import redis
from psycopg_pool import ConnectionPool

from application.access import Access
from application.account_mail import AccountMail
from application.event_log import EventLog
from application.login import Login, SessionRules
from application.mfa import Mfa
from application.passwords import PasswordRules, Passwords
from application.ports import Clock
from application.profile import Profile
from application.registration import Registration, RegistrationRules
from application.throttle import ActionLimits, Limit, RateLimiter, Throttle
from domain.lockout import LockoutPolicy
from domain.password_policy import PasswordPolicy
from infrastructure.clock import SystemClock
from infrastructure.common_passwords import load_common_passwords
from infrastructure.keys import load_secret_key, load_signing_key
from infrastructure.lease import PostgresLease
from infrastructure.mail_files import MailDirectory
from infrastructure.passwords import Argon2Hasher, Argon2Parameters
from infrastructure.persistence import Database
from infrastructure.projector import Projector
from infrastructure.rate_limit import LocalRateLimiter, RedisRateLimiter
from infrastructure.revocation import (
    PostgresRevocationList,
    RedisRevocationList,
    SqliteRevocationList,
)
from infrastructure.secret_box import AesGcmBox
from infrastructure.signing import Ed25519Signer
from infrastructure.totp import Totp
from interfaces.settings import Settings


@dataclass
class Container:
    settings: Settings
    database: Database
    log: EventLog
    registration: Registration
    login: Login
    profile: Profile
    passwords: Passwords
    mfa: Mfa
    access: Access
    signer: Ed25519Signer
    revocations: SqliteRevocationList | PostgresRevocationList | RedisRevocationList
    throttle: Throttle
    projectors: list[Projector]
    clock: Clock
    _stop: threading.Event = field(default_factory=threading.Event)
    _closed: bool = False

    def start_background(self) -> None:
        """Runs the projections in this process (the embedded default's in-process worker)."""
        for projector in self.projectors:
            projector.start(self._stop)

    def run_projectors(self) -> None:
        """Runs the projections in this process until close() (the `tessera projector` command)."""
        threads = [projector.start(self._stop) for projector in self.projectors]
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)

    def stop(self) -> None:
        """Asks background loops to finish; close() then releases what they used."""
        self._stop.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self.revocations.close()
        self.log.close()


def build(settings: Settings, clock: Clock | None = None) -> Container:
    clock = clock or SystemClock()
    data = settings.data_path
    database = Database(url=settings.database_url, sqlite_path=data / "tessera.sqlite")
    log = EventLog(env=database.eventsourcing_env())

    hasher = Argon2Hasher(
        Argon2Parameters(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
        )
    )
    box = AesGcmBox(load_secret_key(settings.secret_key, data / "secret.key"))
    signer = Ed25519Signer(
        load_signing_key(
            settings.jwt_private_key, settings.jwt_private_key_file, data / "signing-key.pem"
        ),
        issuer=settings.issuer,
        audience=settings.jwt_audience,
        lifetime_seconds=settings.access_token_ttl,
    )
    revocations: SqliteRevocationList | PostgresRevocationList | RedisRevocationList
    limiter: RateLimiter
    if settings.redis_url:
        # Short timeouts: a Redis outage must answer 503 fast, not hang the request.
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        revocations = RedisRevocationList(client)
        limiter = RedisRateLimiter(client)
    elif database.is_postgres:
        revocations = PostgresRevocationList(
            ConnectionPool(database.postgres_conninfo(), min_size=1, max_size=10, open=True)
        )
    else:
        revocations = SqliteRevocationList(data / "revocations.sqlite")
    if not settings.redis_url:
        limiter = LocalRateLimiter()

    otp = Totp()
    policy = PasswordPolicy(
        min_length=settings.password_min_length,
        common=load_common_passwords(
            Path(settings.common_passwords_file) if settings.common_passwords_file else None
        ),
        require_lower=settings.password_require_lower,
        require_upper=settings.password_require_upper,
        require_digit=settings.password_require_digit,
        require_symbol=settings.password_require_symbol,
    )
    mail = AccountMail(
        view=database.tracking_recorder(AccountMail.name),
        mailer=MailDirectory(data / "mail", sender=settings.mail_from),
        box=box,
        public_url=settings.public_url,
        product_name=settings.product_name,
    )
    return Container(
        settings=settings,
        database=database,
        log=log,
        registration=Registration(
            log,
            hasher,
            box,
            clock,
            RegistrationRules(
                policy=policy,
                verification_ttl=timedelta(seconds=settings.email_verification_ttl),
            ),
        ),
        login=Login(
            log,
            hasher,
            signer,
            otp,
            box,
            revocations,
            clock,
            SessionRules(
                require_verified_email=settings.require_verified_email,
                refresh_idle_ttl=timedelta(seconds=settings.refresh_token_ttl),
                session_max_age=timedelta(seconds=settings.session_max_age),
                lockout=LockoutPolicy(
                    threshold=settings.lockout_threshold,
                    base=timedelta(seconds=settings.lockout_duration),
                    ceiling=timedelta(seconds=settings.lockout_max_duration),
                ),
            ),
        ),
        passwords=Passwords(
            log,
            hasher,
            box,
            revocations,
            clock,
            PasswordRules(
                policy=policy,
                history_size=settings.password_history,
                reset_ttl=timedelta(seconds=settings.password_reset_ttl),
                access_token_ttl=timedelta(seconds=settings.access_token_ttl),
            ),
        ),
        profile=Profile(log, clock),
        mfa=Mfa(log, otp, box, hasher, clock, issuer=settings.product_name),
        access=Access(signer, revocations, clock),
        signer=signer,
        revocations=revocations,
        throttle=Throttle(limiter, rate_limits(settings), clock),
        projectors=[Projector(log, mail, lease=lease(database, mail.name))],
        clock=clock,
    )


def rate_limits(settings: Settings) -> dict[str, ActionLimits]:
    if not settings.rate_limits_enabled:
        return {}
    specs = {
        "login": settings.rate_limit_login,
        "register": settings.rate_limit_register,
        "forgot_password": settings.rate_limit_forgot_password,
        "resend_verification": settings.rate_limit_resend_verification,
        "reset_password": settings.rate_limit_reset_password,
        "mfa": settings.rate_limit_mfa,
    }
    return {action: _action_limits(spec) for action, spec in specs.items()}


def _action_limits(spec: str) -> ActionLimits:
    limits = []
    for part in spec.split(","):
        count, seconds = part.split("/")
        limits.append(Limit(count=int(count), per=timedelta(seconds=int(seconds))))
    return ActionLimits(per_ip=limits[0], per_identifier=limits[1] if len(limits) > 1 else None)


def lease(database: Database, name: str) -> PostgresLease | None:
    """On PostgreSQL, many projector processes may run: one holds each projection at a time."""
    return PostgresLease(database.postgres_conninfo(), name) if database.is_postgres else None
