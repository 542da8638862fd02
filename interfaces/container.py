"""The composition root: builds the object graph from settings. The only module that does."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import redis

from application.accounts.administration import Administration
from application.accounts.profile import Profile
from application.accounts.registration import Registration, RegistrationRules
from application.audit.history import History
from application.clients.authorization_codes import AuthorizationCodes
from application.clients.consents import Consents
from application.clients.logout import Logout
from application.clients.machine_tokens import MachineTokens
from application.clients.origins import ClientOrigins
from application.clients.person_tokens import PersonTokens
from application.clients.registry import Clients
from application.factors.external_sign_in import ExternalSignIn, ExternalSignInRules
from application.factors.login import Login
from application.factors.mfa import Mfa
from application.factors.passkeys import PasskeyRules, Passkeys
from application.factors.passwords import PasswordRules, Passwords
from application.factors.reauthentication import Reauthentication, ReauthenticationRules
from application.factors.throttle import ActionLimits, Limit, Throttle
from application.mail.outbox import MailOutbox, MailSettings, Postman
from application.persistence.account_views import AccountViews
from application.persistence.event_log import EventLog
from application.persistence.projection import Projection
from application.ports import ClaimSigner, Clock, TokenSigner, VersionedKey
from application.privacy.erasure import Erasure, ErasureFinisher
from application.privacy.personal_data import PersonalDataExport
from application.privacy.restore import AfterRestore
from application.read_side.queries import ReadSide
from application.read_side.read_models import (
    AccountsProjection,
    AuditProjection,
    SessionsProjection,
)
from application.read_side.read_seals import ReadSeals
from application.sessions.access import Access
from application.sessions.lifecycle import SessionRules, Sessions
from application.webhooks.courier import Courier, CourierSettings
from application.webhooks.deliveries import Deliveries
from application.webhooks.endpoints import WebhookEndpoints
from application.webhooks.feed import Publication, WebhookFeed
from application.webhooks.replay import Replays
from domain.lockout import LockoutPolicy
from domain.password_policy import PasswordPolicy
from domain.webhook import Reach
from infrastructure import metrics
from infrastructure.broker import MailBroker, RetryPolicy
from infrastructure.clock import SystemClock
from infrastructure.common_passwords import load_common_passwords
from infrastructure.data_keys import KeyStoreEmpty, WrappedDataKeys
from infrastructure.devices import device_name
from infrastructure.expired_state import ExpiredState
from infrastructure.freshness import ProjectionWaits
from infrastructure.hash_gate import HashGate
from infrastructure.key_rotation import KeyLifetimes, ServiceKeyRotation
from infrastructure.key_store import key_store
from infrastructure.keyring import CSRF, REFRESH_TAGS, SEALED_VALUES, Keyring
from infrastructure.keys import (
    ED25519,
    P256,
    RSA,
    KeyKind,
    MissingKey,
    load_fallback_keys,
    load_previous_keys,
    load_private_key,
    load_secret_key,
)
from infrastructure.lag_reports import LagReports
from infrastructure.mail_files import MailDirectory, SmtpRelay, SmtpSettings
from infrastructure.mail_render import TemplateRenderer
from infrastructure.oidc import OidcClients
from infrastructure.passwords import Argon2Hasher, Argon2Parameters
from infrastructure.persistence import Database, snapshot_dropper
from infrastructure.projector import Lag, Projector
from infrastructure.secret_box import AesGcmBox
from infrastructure.signing import Ed25519Signer
from infrastructure.signing_keys import SigningKeys
from infrastructure.totp import Totp
from infrastructure.webauthn import PyWebAuthn
from infrastructure.webhook_post import GuardedPoster, StandardSigner
from interfaces.runtime import Runtime
from interfaces.security_log import SecurityLog
from interfaces.settings import Settings, identity_providers
from interfaces.stores.embedded import embedded_stores
from interfaces.stores.postgres import postgres_stores
from interfaces.stores.redis_state import redis_state
from interfaces.stores.roles import ChainStore, OneTimeValueStore, RevocationStore, Wakeups

log = logging.getLogger(__name__)


class NoStore(Exception):
    """Where the settings point there is no store (or not its keys), and the command at hand
    may not make one: an operator's command run from the wrong folder would otherwise make a
    new, empty store there and report on it."""


@dataclass
class Container:
    """The object graph, each part named by its role. What runs in the background, and what
    /health/ready asks, is the runtime's (interfaces/runtime.py); the methods below hand over to
    it, so callers hold one handle."""

    settings: Settings
    database: Database
    log: EventLog
    registration: Registration
    login: Login
    sessions: Sessions
    profile: Profile
    passwords: Passwords
    mfa: Mfa
    reauthentication: Reauthentication
    passkeys: Passkeys
    one_time_values: OneTimeValueStore
    external_sign_in: ExternalSignIn
    access: Access
    administration: Administration
    clients: Clients
    consents: Consents
    authorization_codes: AuthorizationCodes
    webhooks: WebhookEndpoints
    replays: Replays
    webhook_deliveries: Deliveries
    webhook_feed: WebhookFeed
    courier: Courier
    machine_tokens: MachineTokens
    person_tokens: PersonTokens
    erasure: Erasure
    after_restore: AfterRestore
    personal_data: PersonalDataExport
    read_side: ReadSide
    history: History
    signer: TokenSigner
    # Signs with the algorithm asked for (EdDSA, RS256, ES256): ID tokens, other apps' tokens.
    claim_signer: ClaimSigner
    revocations: RevocationStore
    chains: ChainStore
    throttle: Throttle
    client_origins: ClientOrigins  # whence browser apps may call the provider (CORS)
    logout: Logout  # what an app's RP-Initiated Logout request proves
    projectors: list[Projector]
    lag_reports: LagReports
    outbox: MailOutbox
    wakeups: Wakeups | None
    postman: Postman
    mail_broker: MailBroker
    # The server every API process shares revocations, chains and limits through (Redis);
    # None where that state sits in the database.
    shared_server: redis.Redis | None
    clock: Clock
    runtime: Runtime
    # Signs the pages' CSRF tokens; kept in the key table, so every API process agrees.
    csrf_key: bytes | VersionedKey = b""
    # Replaces the service's own keys after a compromise (`tessera admin rekey --service-keys`).
    service_keys: ServiceKeyRotation | None = None
    keys: WrappedDataKeys | None = None  # closed with the container (a key store's own pool)
    _closed: bool = False

    def projector(self, name: str) -> Projector:
        for projector in self.projectors:
            if projector.name == name:
                return projector
        raise KeyError(name)

    @property
    def request_threads(self) -> int:
        """Threads for the synchronous request handlers: room for every login the hash gate
        may hold (hashing or queued) and as many again for everything else, so a flood of logins
        is refused by the gate at once instead of waiting for a thread, and other endpoints
        never wait behind it."""
        slots, queue = hash_admission(self.settings)
        return slots + queue + 32

    def readiness(self) -> dict[str, str]:
        return self.runtime.readiness()

    def projection_lag(self) -> dict[str, Lag]:
        return self.runtime.projection_lag()

    @property
    def runs_in_one_process(self) -> bool:
        return self.runtime.runs_in_one_process

    def start_background(self) -> None:
        self.runtime.start_background()

    def run_projectors(self) -> None:
        self.runtime.run_projectors()

    def stop(self) -> None:
        self.runtime.stop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.runtime.stop()
        try:
            self.machine_tokens.flush()
        except Exception:  # the store is away: the counts are lost, never the shutdown
            log.warning("machine tokens issued since the last record were not recorded")
        self.mail_broker.stop()
        self.revocations.close()
        self.chains.close()
        self.one_time_values.close()
        for projector in self.projectors:
            projector.close()
        self.log.close()
        if self.keys is not None:
            self.keys.close()


def build(
    settings: Settings,
    clock: Clock | None = None,
    data_keys: Callable[[Keyring], WrappedDataKeys] = WrappedDataKeys,
    create: bool = True,
) -> Container:
    """`data_keys`: made from SECRET_KEY; only the bench passes another (bench/plain_keys.py,
    which leaves values unsealed to measure what sealing costs); no setting chooses it.

    `create`: whether a store (and its keys) may be made where the settings point; the
    services make one on first start, an operator's command only reads one (NoStore).
    """
    database = Database(
        url=settings.database_url, sqlite_path=settings.data_path / "tessera.sqlite"
    )
    with database.schema_lock():
        # The library names the events table after the application.
        new = not database.holds_a_store(f"{EventLog.name.lower()}_events")
        if new and not create:
            raise NoStore(
                f"no store at {database.place}: run this where the server runs, or set"
                f" {'DATABASE_URL' if database.is_postgres else 'DATA_DIR (or DATABASE_URL)'}"
                " to the server's"
            )
        try:
            container = _build(settings, database, clock or SystemClock(), data_keys, create)
        except MissingKey as missing:
            raise NoStore(str(missing)) from None
    if new:
        log.info("created a new store at %s", database.place)
    return container


def _build(
    settings: Settings,
    database: Database,
    clock: Clock,
    data_keys: Callable[[Keyring], WrappedDataKeys],
    create: bool,
) -> Container:
    data = settings.data_path
    env = database.eventsourcing_env()
    if settings.aggregate_cache_size:
        # The library's cache, fast-forwarded on every use (its default) and copied out, so a
        # command never mutates the cached object: /me costs one indexed read, not a replay.
        env["AGGREGATE_CACHE_MAXSIZE"] = str(settings.aggregate_cache_size)
    keys = data_keys(keyring(settings, create))
    keys.use_clock(clock.now)
    log = EventLog(keys, env=env, observers=[metrics.EventMetrics(), SecurityLog()])
    shared = redis_state(settings.redis_url) if settings.redis_url else None
    profile = postgres_stores if database.is_postgres else embedded_stores
    # KEY_STORE_URL: the keys in a store of their own, whatever the profile (else beside events).
    apart = key_store(settings.key_store_url) if settings.key_store_url else None
    try:
        stores = profile(database, log, keys, shared, apart)
    except KeyStoreEmpty:
        log.close()
        raise
    revocations, chains = stores.shared.revocations, stores.shared.chains
    one_time_values = stores.shared.one_time_values
    log.announce_to(revocations)

    slots, queue = hash_admission(settings)
    hasher = HashGate(
        Argon2Hasher(
            Argon2Parameters(
                time_cost=settings.argon2_time_cost,
                memory_cost=settings.argon2_memory_cost,
                parallelism=settings.argon2_parallelism,
            )
        ),
        slots=slots,
        queue=queue,
        wait=settings.hash_queue_timeout,
        share=hash_share(settings, queue),
    )
    box = AesGcmBox(keys.service_keys(SEALED_VALUES, clock.now))
    signing_keys = signing_keys_of(settings, create)
    signer = Ed25519Signer(
        signing_keys,
        issuer=settings.issuer,
        audience=settings.jwt_audience,
        lifetime_seconds=settings.access_token_ttl,
    )
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
    ledger = stores.mail_ledger
    transport = (
        SmtpRelay(
            SmtpSettings(
                host=settings.mail_server,
                port=settings.mail_port,
                starttls=settings.mail_use_tls,
                implicit_tls=settings.mail_use_ssl,
                username=settings.mail_username,
                password=settings.mail_password,
                sender=settings.mail_from,
                timeout=settings.mail_timeout,
            )
        )
        if settings.mail_server
        else MailDirectory(data / "mail", sender=settings.mail_from)
    )
    postman = Postman(
        log,
        ledger,
        TemplateRenderer(),
        transport,
        box,
        clock,
        MailSettings(
            public_url=settings.public_url,
            product_name=settings.product_name,
            # A worker that dies mid-send leaves a claim that runs out this soon; a live one
            # renews it for as long as one SMTP conversation can last.
            claim_ttl=timedelta(seconds=settings.mail_redeliver_after),
            longest_send=timedelta(seconds=2 * settings.mail_timeout + 5),
        ),
        drop=transport if isinstance(transport, MailDirectory) else None,
    )
    mail_broker = MailBroker(
        settings.redis_url,
        postman,
        RetryPolicy(
            max_retries=settings.mail_max_retries,
            min_backoff_ms=settings.mail_retry_min_backoff,
            max_backoff_ms=settings.mail_retry_max_backoff,
        ),
        dead_worker_after_ms=settings.mail_redeliver_after * 1000,
    )
    accounts, sessions, audit = stores.accounts, stores.sessions, stores.audit
    mail = MailOutbox(
        ledger,
        mail_broker,
        clock,
        notify_sign_ins=settings.notify_new_sign_in,
        admins=lambda: [UUID(a) for a in accounts.holding("admin")],  # type: ignore[attr-defined]
    )
    seals = ReadSeals(keys)
    reach = Reach(
        http_loopback=settings.webhook_allow_http_loopback,
        private_targets=settings.webhook_allow_private_targets,
    )
    webhook_ledger = stores.webhook_ledger
    webhooks = WebhookEndpoints(log, box, clock, reach, webhook_ledger)
    publication = Publication(log, seals)
    courier = Courier(
        webhook_ledger,
        webhooks,
        GuardedPoster(reach, timeout=settings.webhook_timeout),
        StandardSigner(),
        box,
        seals,
        clock,
        # webhook-timestamp is the real time of each try, whatever clock the schedule keeps:
        # receivers check it against theirs.
        SystemClock().now,
        CourierSettings(
            # New posts start within a third of it, each lasts at most the timeout: 5 s spare.
            claim_ttl=timedelta(seconds=2 * settings.webhook_timeout + 5),
            lanes_per_endpoint=max(1, settings.webhook_worker_threads // 2),
        ),
    )
    lanes = mail_broker.carry_webhooks(
        courier,
        RetryPolicy(
            max_retries=settings.mail_max_retries,
            min_backoff_ms=settings.mail_retry_min_backoff,
            max_backoff_ms=settings.mail_retry_max_backoff,
        ),
    )
    courier.wake_through(lanes)
    webhook_feed = WebhookFeed(webhook_ledger, publication, webhooks, lanes, clock)
    replays = Replays(log, webhooks, publication, webhook_ledger, lanes, clock)
    lockout = LockoutPolicy(
        threshold=settings.lockout_threshold,
        base=timedelta(seconds=settings.lockout_duration),
        ceiling=timedelta(seconds=settings.lockout_max_duration),
    )
    throttle = Throttle(stores.shared.limiter, rate_limits(settings), clock, keys.fingerprint)
    clients = Clients(log, clock, settings.client_cache_seconds)
    webauthn = PyWebAuthn(settings.rp_id, settings.rp_name, settings.rp_origins)
    session_rules = SessionRules(
        require_verified_email=settings.require_verified_email,
        refresh_idle_ttl=timedelta(seconds=settings.refresh_token_ttl),
        session_max_age=timedelta(seconds=settings.session_max_age),
        reuse_interval=timedelta(seconds=settings.refresh_reuse_interval),
        lockout=lockout,
    )
    account_views = AccountViews(log, revocations, settings.aggregate_cache_size)
    session_life = Sessions(
        log,
        chains,
        account_views,
        signer,
        revocations,
        clock,
        session_rules,
        keys.service_keys(REFRESH_TAGS, clock.now),
    )
    reauthentication = Reauthentication(
        log,
        hasher,
        otp,
        box,
        webauthn,
        one_time_values,
        throttle,
        clock,
        ReauthenticationRules(
            max_age=timedelta(seconds=settings.reauth_max_age),
            challenge_ttl=timedelta(seconds=settings.passkey_challenge_ttl),
            lockout=lockout,
        ),
    )
    assert log.snapshots is not None
    erasure = Erasure(
        log,
        reauthentication,
        session_life,
        snapshot_dropper(log.snapshots.recorder),
        clock,
        forget_mails=postman.forget,
    )
    projections: list[Projection] = [
        mail,
        webhook_feed,
        AccountsProjection(accounts, seals),
        SessionsProjection(sessions, seals),
        AuditProjection(audit, seals),
        ErasureFinisher(stores.erasures, erasure),
    ]
    projectors = [
        Projector(log, projection, lease=stores.lease(projection.name))
        for projection in projections
    ]
    wakeups = stores.wakeups
    lag_reports = LagReports(projectors, clock)
    expiring = stores.shared.expiring
    expired_state = ExpiredState(expiring, stores.lease("expired-state")) if expiring else None
    waits = ProjectionWaits(
        projectors, settings.read_your_writes_wait, wakeups.notify if wakeups else None
    )
    metrics.watch_queue_depth(lambda: _queue_depth(ledger))
    login = Login(log, hasher, signer, otp, box, session_life, clock, session_rules)
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
        login=login,
        passwords=Passwords(
            log,
            hasher,
            box,
            session_life,
            clock,
            PasswordRules(
                policy=policy,
                history_size=settings.password_history,
                reset_ttl=timedelta(seconds=settings.password_reset_ttl),
            ),
            reauthentication,
        ),
        sessions=session_life,
        profile=Profile(log, account_views, clock),
        mfa=Mfa(log, otp, box, reauthentication, clock, issuer=settings.product_name),
        reauthentication=reauthentication,
        passkeys=Passkeys(
            log,
            webauthn,
            one_time_values,
            login,
            session_life,
            signer,
            reauthentication,
            clock,
            PasskeyRules(
                challenge_ttl=timedelta(seconds=settings.passkey_challenge_ttl),
                require_verified_email=settings.require_verified_email,
                lockout=session_rules.lockout,
            ),
        ),
        one_time_values=one_time_values,
        external_sign_in=ExternalSignIn(
            log,
            OidcClients(identity_providers(settings), timeout=settings.oidc_timeout),
            one_time_values,
            session_life,
            signer,
            box,
            clock,
            ExternalSignInRules(
                redirect_uris=settings.redirect_uris,
                refusals_to=(
                    frozenset({settings.pages_sign_in_uri})
                    if settings.pages_enabled
                    else frozenset()
                ),
                callback_url=settings.public_url.rstrip("/") + "/api/auth/oidc/{provider}/callback",
                state_ttl=timedelta(seconds=settings.oidc_state_ttl),
                require_verified_email=settings.require_verified_email,
                verification_ttl=timedelta(seconds=settings.email_verification_ttl),
            ),
            reauthentication,
        ),
        access=Access(signer, revocations, clock),
        administration=Administration(log, session_life, clock),
        clients=clients,
        consents=Consents(log, clients, session_life, clock),
        authorization_codes=AuthorizationCodes(one_time_values, clock),
        webhooks=webhooks,
        replays=replays,
        webhook_deliveries=Deliveries(webhooks, webhook_ledger),
        webhook_feed=webhook_feed,
        courier=courier,
        machine_tokens=MachineTokens(
            clients,
            log,
            signing_keys,
            revocations,
            clock,
            issuer=settings.issuer,
            lifetime_seconds=settings.access_token_ttl,
        ),
        person_tokens=PersonTokens(
            account_views,
            signing_keys,
            revocations,
            clock,
            issuer=settings.issuer,
            userinfo_audience=settings.public_url.rstrip("/") + "/oauth2/userinfo",
            lifetime_seconds=settings.access_token_ttl,
        ),
        erasure=erasure,
        after_restore=AfterRestore(log, erasure),
        personal_data=PersonalDataExport(log, sessions, ledger, clock, seals),
        read_side=ReadSide(accounts, sessions, audit, waits, clock, device_name, seals),
        history=History(log),
        signer=signer,
        claim_signer=signing_keys,
        revocations=revocations,
        chains=chains,
        throttle=throttle,
        client_origins=ClientOrigins(clients, clock),
        logout=Logout(clients, signing_keys, settings.issuer),
        projectors=projectors,
        lag_reports=lag_reports,
        outbox=mail,
        wakeups=wakeups,
        postman=postman,
        mail_broker=mail_broker,
        shared_server=stores.shared.redis,
        clock=clock,
        runtime=Runtime(
            settings,
            log,
            projectors,
            lag_reports,
            mail,
            mail_broker,
            wakeups,
            webhook_feed,
            stores.shared.redis,
            key_store=keys if apart is not None else None,
            replays=replays,
            expired_state=expired_state,
        ),
        csrf_key=keys.service_keys(CSRF, clock.now),
        service_keys=ServiceKeyRotation(
            keys,
            log,
            clock,
            KeyLifetimes(
                refresh_token=timedelta(seconds=settings.refresh_token_ttl),
                mailed_token=timedelta(
                    seconds=max(settings.email_verification_ttl, settings.password_reset_ttl)
                ),
            ),
        ),
        keys=keys,
    )


def signing_keys_of(settings: Settings, create: bool = True) -> SigningKeys:
    """The token signing keys from settings; unset, those kept under DATA_DIR, made there on
    first start by the commands that may make a store (`create`)."""
    keys = []
    for kind, pem, pem_file in given_signing_keys(settings):
        kept = settings.data_path / kind.dev_file
        if kind is not ED25519 and not (pem or pem_file or create or kept.exists()):
            # A store made before the ID-token keys: an operator's command signs no ID token,
            # and leaves them to the service's next start.
            continue
        keys.append(load_private_key(kind, pem, pem_file, kept, create))
    previous = load_previous_keys(settings.jwt_previous_keys, settings.jwt_previous_keys_file)
    return SigningKeys(keys, previous)


def given_signing_keys(settings: Settings) -> list[tuple[KeyKind, str | None, str | None]]:
    return [
        (ED25519, settings.jwt_private_key, settings.jwt_private_key_file),
        (RSA, settings.jwt_rsa_private_key, settings.jwt_rsa_private_key_file),
        (P256, settings.jwt_ec_private_key, settings.jwt_ec_private_key_file),
    ]


def keyring(settings: Settings, create: bool = True) -> Keyring:
    return Keyring(
        load_secret_key(settings.secret_key, settings.data_path / "secret.key", create),
        load_fallback_keys(settings.secret_key_fallbacks),
    )


def hash_share(settings: Settings, queue: int) -> int:
    """Places in the hash queue one client address or one signed-in account may hold."""
    return settings.hash_share or max(1, queue // 4)


def hash_admission(settings: Settings) -> tuple[int, int]:
    """Hashes at once (default: one per core) and hashes that may wait (default: four a slot)."""
    slots = settings.hash_concurrency or os.cpu_count() or 1
    return slots, settings.hash_queue or 4 * slots


def rate_limits(settings: Settings) -> dict[str, ActionLimits]:
    if not settings.rate_limits_enabled:
        return {}
    specs = {
        "login": settings.rate_limit_login,
        # A guess behind a token is limited as one at the sign-in is (application/factors/reauthentication.py).
        "reauthenticate": settings.rate_limit_login,
        "register": settings.rate_limit_register,
        "forgot_password": settings.rate_limit_forgot_password,
        "resend_verification": settings.rate_limit_resend_verification,
        "reset_password": settings.rate_limit_reset_password,
        "mfa": settings.rate_limit_mfa,
        "passkey_options": settings.rate_limit_passkey_options,
        "client_auth": settings.rate_limit_client_auth,
    }
    return {action: _action_limits(spec) for action, spec in specs.items()}


def _action_limits(spec: str) -> ActionLimits:
    limits = []
    for part in spec.split(","):
        count, seconds = part.split("/")
        limits.append(Limit(count=int(count), per=timedelta(seconds=int(seconds))))
    return ActionLimits(per_ip=limits[0], per_identifier=limits[1] if len(limits) > 1 else None)


def _queue_depth(ledger: Any) -> float:
    try:
        counts = ledger.counts()
    except Exception:  # a scrape must answer even while the database does not
        return float("nan")
    return float(counts.get("queued", 0) + counts.get("sending", 0))
