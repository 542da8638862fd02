"""The one settings object. Environment variables (and a .env file) are read here and nowhere else."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec
from dotenv import dotenv_values

from infrastructure.oidc import GITHUB, OIDC, ProviderConfig

Seconds = Annotated[int, msgspec.Meta(ge=1)]
RateSpec = Annotated[
    str, msgspec.Meta(pattern=r"^[1-9][0-9]*/[1-9][0-9]*(,[1-9][0-9]*/[1-9][0-9]*)?$")
]


class Settings(msgspec.Struct, rename="upper", forbid_unknown_fields=False, frozen=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    data_dir: str = "./var"
    database_url: str | None = None
    # Where the data keys and the erasure ledger live: a PostgreSQL URL or a SQLite file path;
    # unset, beside the events (DATABASE_URL's database, or DATA_DIR/keys.sqlite).
    key_store_url: str | None = None
    redis_url: str | None = None  # rate limits and revocations shared by every API process
    # Comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is true.
    trusted_proxies: str = ""
    public_url: str = "http://127.0.0.1:8000"
    product_name: str = "Tessera"
    # The server-rendered pages (sign in, register, the mail links, my account); false for an
    # integrator with a front end of its own: then none of their routes exists.
    pages_enabled: bool = True
    # Origins (comma-separated, exact: scheme://host[:port]) whose browser pages may call
    # /api/*; none by default. "*" is refused. No credentials: the API takes Bearer tokens.
    cors_allowed_origins: str = ""

    # Mail: SMTP when MAIL_SERVER is set, else .eml files in DATA_DIR/mail/.
    mail_server: str | None = None
    mail_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 25
    mail_use_tls: bool = False  # STARTTLS
    mail_use_ssl: bool = False  # implicit TLS (SMTPS)
    mail_username: str | None = None
    mail_password: str | None = None
    mail_from: str = "Tessera <no-reply@localhost>"
    mail_timeout: Seconds = 30
    mail_max_retries: Annotated[int, msgspec.Meta(ge=0, le=30)] = 8
    mail_retry_min_backoff: Annotated[int, msgspec.Meta(ge=1)] = 1000  # milliseconds
    mail_retry_max_backoff: Annotated[int, msgspec.Meta(ge=1)] = 600_000
    # Seconds a worker may go silent (killed, crashed, its machine gone) before the mail it held
    # goes to another: the one it was sending, its prefetched ones, and its retries waiting for
    # their time. Live workers beat every third of it, so it is never taken from them.
    mail_redeliver_after: Annotated[int, msgspec.Meta(ge=3)] = 15
    notify_new_sign_in: bool = True
    worker_threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    worker_metrics_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    # Webhooks: threads of their own in each worker (a hanging receiver holds one for at most
    # WEBHOOK_TIMEOUT seconds); http:// to loopback addresses (tests, local development); and
    # receivers at private, loopback or link-local addresses (a receiver inside the network).
    webhook_worker_threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    webhook_timeout: Annotated[int, msgspec.Meta(ge=1, le=60)] = 15
    webhook_allow_http_loopback: bool = False
    webhook_allow_private_targets: bool = False
    # /health/ready answers 503 while a projection is further behind the event store than this.
    projection_lag_threshold: Seconds = 30
    # How long a read of a caller's own views may wait for the projection to show the caller's
    # own commands; past it, it answers what it has, with a Tessera-Read-Behind header.
    read_your_writes_wait: Annotated[float, msgspec.Meta(ge=0, le=30)] = 2.0

    # Tokens
    jwt_issuer: str | None = None  # default: PUBLIC_URL
    jwt_audience: str = "tessera"
    jwt_private_key: str | None = None  # PEM (PKCS#8, Ed25519)
    jwt_private_key_file: str | None = None
    jwt_rsa_private_key: str | None = None  # PEM (PKCS#8, RSA >= 2048 bits): RS256
    jwt_rsa_private_key_file: str | None = None
    jwt_ec_private_key: str | None = None  # PEM (PKCS#8, EC P-256): ES256
    jwt_ec_private_key_file: str | None = None
    # Public keys replaced by a rotation, as a JWKS: they verify and are published, never sign.
    jwt_previous_keys: str | None = None
    jwt_previous_keys_file: str | None = None
    access_token_ttl: Seconds = 900
    refresh_token_ttl: Seconds = 14 * 24 * 3600
    session_max_age: Seconds = 90 * 24 * 3600
    # A refresh token presented again this soon after its own rotation gets the pair it was
    # turned into (two tabs, a lost answer retried) instead of ending the session; 0: strict.
    refresh_reuse_interval: Annotated[int, msgspec.Meta(ge=0, le=60)] = 10
    email_verification_ttl: Seconds = 24 * 3600
    secret_key: str | None = None  # 32 bytes, URL-safe base64: wraps every key the store keeps
    # Keys SECRET_KEY replaced, comma-separated: they only open what they wrapped, until
    # `tessera admin rekey` has wrapped it all again under SECRET_KEY.
    secret_key_fallbacks: str = ""

    # Telemetry
    otel_exporter_otlp_endpoint: str | None = None  # e.g. http://otel-collector:4318
    otel_service_name: str = "tessera"
    log_level: str = "INFO"
    log_file: str | None = None  # the same lines here too, besides stdout
    # "ecs": Elastic Common Schema; "json": the older field names, kept for one release;
    # "console": short lines for a person at a terminal (`make run`), LOG_FILE still ECS.
    log_format: Literal["ecs", "json", "console"] = "ecs"

    # Accounts
    require_verified_email: bool = True
    password_min_length: Annotated[int, msgspec.Meta(ge=8)] = 8
    password_history: Annotated[int, msgspec.Meta(ge=1, le=24)] = 5
    password_require_lower: bool = False
    password_require_upper: bool = False
    password_require_digit: bool = False
    password_require_symbol: bool = False
    common_passwords_file: str | None = None  # default: the shipped list of 30,000
    password_reset_ttl: Seconds = 1800
    lockout_threshold: Annotated[int, msgspec.Meta(ge=1)] = 5
    lockout_duration: Seconds = 900
    lockout_max_duration: Seconds = 86400
    # Where a change asks for re-authentication, how recent a sign-in (the access token's
    # auth_time) proves an account that has no password.
    reauth_max_age: Seconds = 300

    # Passkeys (WebAuthn). The RP ID is a registrable domain (default: PUBLIC_URL's host); the
    # origins (comma-separated) are where the browser may run the ceremonies (default:
    # PUBLIC_URL's origin); the RP name is shown by the authenticator (default: PRODUCT_NAME).
    webauthn_rp_id: str | None = None
    webauthn_origins: str | None = None
    webauthn_rp_name: str | None = None
    passkey_challenge_ttl: Seconds = 300

    # Other identity providers (OpenID Connect; GitHub's OAuth 2.0). OIDC_PROVIDERS names them
    # (comma-separated); each NAME is configured by OIDC_<NAME>_* (PROVIDER_SETTINGS below),
    # which load_settings gathers into oidc_provider_values. The client redirect URIs that a
    # sign-in may end at: comma-separated, matched exactly.
    oidc_providers: str = ""
    oidc_redirect_uris: str = ""
    oidc_timeout: Annotated[float, msgspec.Meta(gt=0, le=30)] = 5.0  # seconds, per request
    oidc_state_ttl: Seconds = 600  # how long a started sign-in waits for the provider
    oidc_provider_values: dict[str, str] = {}  # not a variable: OIDC_<NAME>_*, gathered

    # Rate limits: "<per client IP>[,<per login or email>]", each "<requests>/<seconds>".
    rate_limits_enabled: bool = True
    rate_limit_login: RateSpec = "30/60,10/60"
    rate_limit_register: RateSpec = "10/3600"
    rate_limit_forgot_password: RateSpec = "10/3600,3/3600"  # noqa: S105
    rate_limit_resend_verification: RateSpec = "10/3600,3/3600"
    rate_limit_reset_password: RateSpec = "20/3600"  # noqa: S105
    rate_limit_mfa: RateSpec = "30/60,10/60"
    # Asking for passkey options (each stores a challenge, unauthenticated): per client IP.
    rate_limit_passkey_options: RateSpec = "60/60"
    # Failed client authentications at the OpenID Provider's endpoints (a wrong client secret),
    # per client IP: only failures count, so a busy API asking for tokens is never limited.
    rate_limit_client_auth: RateSpec = "20/60"
    argon2_time_cost: Annotated[int, msgspec.Meta(ge=1)] = 3
    argon2_memory_cost: Annotated[int, msgspec.Meta(ge=8)] = 65536
    argon2_parallelism: Annotated[int, msgspec.Meta(ge=1)] = 4
    # Admission control for hashing: this many at once (0: one per core), at most HASH_QUEUE
    # waiting (0: four per slot), each for at most HASH_QUEUE_TIMEOUT seconds; beyond, 503.
    hash_concurrency: Annotated[int, msgspec.Meta(ge=0)] = 0
    hash_queue: Annotated[int, msgspec.Meta(ge=0)] = 0
    hash_queue_timeout: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    # Of those waiting, at most HASH_SHARE for one client address or one signed-in account
    # (0: a quarter of the queue, at least one); beyond, 503 for that one alone.
    hash_share: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Aggregates kept in memory per process (0: none). A cached one is brought up to date with
    # one indexed read of the events recorded after it, so a hit is never stale.
    aggregate_cache_size: Annotated[int, msgspec.Meta(ge=0)] = 10_000
    # How long a process authenticates an OpenID Provider client, answers introspection for its
    # tokens and reads its authorization requests' settings, from what it read of it before: a
    # removed client, a removed redirect URI or a rotated-out secret stops working everywhere
    # within this long (at once in the process that made the change).
    client_cache_seconds: Annotated[int, msgspec.Meta(ge=0, le=300)] = 10

    @property
    def cors_origins(self) -> frozenset[str]:
        return frozenset(o.strip() for o in self.cors_allowed_origins.split(",") if o.strip())

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def rp_id(self) -> str:
        return self.webauthn_rp_id or (urlsplit(self.public_url).hostname or "localhost")

    @property
    def rp_origins(self) -> tuple[str, ...]:
        if self.webauthn_origins:
            return tuple(
                o.strip().rstrip("/") for o in self.webauthn_origins.split(",") if o.strip()
            )
        url = urlsplit(self.public_url)
        return (f"{url.scheme}://{url.netloc}",)

    @property
    def rp_name(self) -> str:
        return self.webauthn_rp_name or self.product_name

    @property
    def pages_sign_in_uri(self) -> str:
        """Where a sign-in (or a link) started from the pages comes back: /login/oidc."""
        return self.public_url.rstrip("/") + "/login/oidc"

    @property
    def redirect_uris(self) -> frozenset[str]:
        """OIDC_REDIRECT_URIS, and the pages' own /login/oidc when the pages are on: it is this
        service's own page at its own origin, so listing it could only be forgotten."""
        listed = frozenset(u.strip() for u in self.oidc_redirect_uris.split(",") if u.strip())
        return listed | {self.pages_sign_in_uri} if self.pages_enabled else listed

    @property
    def issuer(self) -> str:
        return self.jwt_issuer or self.public_url.rstrip("/")


# The variables of each provider NAME in OIDC_PROVIDERS: OIDC_<NAME>_<SUFFIX>.
PROVIDER_SETTINGS = (
    "PRESET",  # google, microsoft, github (default: NAME, when it is one of them), or oidc
    "ISSUER",  # OpenID Connect: discovery at ISSUER/.well-known/openid-configuration
    "CLIENT_ID",
    "CLIENT_SECRET",
    "SCOPES",  # default: "openid email profile" (GitHub: "read:user user:email")
    "TRUST_MFA",  # true: the provider's multi-factor sign-in (amr/acr) stands for tessera's MFA
    "LABEL",  # the button's name (default: the preset's, or NAME)
    "TENANT",  # microsoft: the directory (tenant id, or "common", "organizations")
    "API_URL",  # github: the REST API (GitHub Enterprise: https://HOST/api/v3)
    "AUTHORIZE_URL",  # github: the authorization endpoint
    "TOKEN_URL",  # github: the token endpoint
)
_PRESETS: dict[str, dict[str, str]] = {
    "google": {"ISSUER": "https://accounts.google.com", "LABEL": "Google"},
    "microsoft": {
        "ISSUER": "https://login.microsoftonline.com/{tenant}/v2.0",
        "LABEL": "Microsoft",
        "TENANT": "common",
    },
    "github": {"LABEL": "GitHub", "SCOPES": "read:user user:email"},
}


def identity_providers(settings: Settings) -> list[ProviderConfig]:
    """Each provider in OIDC_PROVIDERS, its preset filled in; stops the service with the name
    of a missing variable."""
    configs = []
    for name in (n.strip().lower() for n in settings.oidc_providers.split(",")):
        if not name:
            continue
        if not re.fullmatch(r"[a-z0-9]{1,32}", name):
            raise SystemExit(f"invalid setting: OIDC_PROVIDERS: {name!r} is not [a-z0-9]{{1,32}}")
        prefix = f"OIDC_{name.upper()}_"
        given = {
            key.removeprefix(prefix): value
            for key, value in settings.oidc_provider_values.items()
            if key.startswith(prefix) and value
        }
        preset = given.get("PRESET", name if name in _PRESETS else "oidc").lower()
        values = {**_PRESETS.get(preset, {}), **given}
        for needed in ("CLIENT_ID", "CLIENT_SECRET", *(("ISSUER",) if preset != "github" else ())):
            if needed not in values:
                raise SystemExit(f"invalid setting: {prefix}{needed} is required")
        configs.append(
            ProviderConfig(
                name=name,
                kind=GITHUB if preset == "github" else OIDC,
                label=values.get("LABEL", name.title()),
                client_id=values["CLIENT_ID"],
                client_secret=values["CLIENT_SECRET"],
                scopes=values.get("SCOPES", "openid email profile"),
                issuer=values.get("ISSUER", "").replace("{tenant}", values.get("TENANT", "")),
                trust_mfa=values.get("TRUST_MFA", "false").lower() in ("1", "true", "yes"),
                **{
                    field: values[key]
                    for field, key in (
                        ("api_url", "API_URL"),
                        ("authorize_url", "AUTHORIZE_URL"),
                        ("token_url", "TOKEN_URL"),
                    )
                    if key in values
                },
            )
        )
    return configs


def load_settings(environ: dict[str, str] | None = None, env_file: str = ".env") -> Settings:
    """Settings from a .env file, overridden by the process environment (or the given mapping)."""
    values: dict[str, str] = {}
    if environ is None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    fields = {f.upper() for f in Settings.__struct_fields__}
    # Empty strings mean "unset", as in most .env conventions.
    known: dict[str, object] = {k: v for k, v in values.items() if k in fields and v != ""}
    known.pop("OIDC_PROVIDER_VALUES", None)  # gathered below, never given as one variable
    known["OIDC_PROVIDER_VALUES"] = {
        k: v for k, v in values.items() if k.startswith("OIDC_") and k not in fields and v != ""
    }
    try:
        settings = msgspec.convert(known, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise SystemExit(f"invalid setting: {error}") from None
    for origin in settings.cors_origins:
        _check_origin(origin)
    return settings


def _check_origin(origin: str) -> None:
    """An origin as a browser writes it in its Origin header, since it is compared exactly:
    lower case, no path, no default port. "*" would let any site's page call the API."""
    if origin == "*":
        raise SystemExit(
            "invalid setting: CORS_ALLOWED_ORIGINS: '*' is refused; list each origin exactly"
        )
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    written = f"{parts.scheme}://{host}{'' if port in (None, default) else f':{port}'}"
    if default is None or not host or "@" in parts.netloc or origin != written:
        raise SystemExit(
            f"invalid setting: CORS_ALLOWED_ORIGINS: {origin!r} is not an origin as browsers"
            " send it (scheme://host[:port], lower case, no path, no default port)"
        )
