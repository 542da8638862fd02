"""What the use cases need from the outside world. Adapters in infrastructure implement these."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID


class Unavailable(Exception):
    """A backing service (database, Redis) did not answer: the request cannot be decided safely."""


class Overloaded(Exception):
    """Too much password hashing in flight: refused at once rather than queued until timeouts."""


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class DeviceNames(Protocol):
    def __call__(self, user_agent: str) -> str | None:
        """A person's words for what a User-Agent header names ("Chrome 156 on Linux"); None
        where it names nothing known. Pure: the same header, the same words."""
        ...


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password_hash: str, password: str) -> bool:
        """True when the password matches; False, never an exception, when it does not."""
        ...

    def needs_rehash(self, password_hash: str) -> bool: ...


@dataclass(frozen=True)
class AccessClaims:
    account_id: UUID
    session_id: UUID
    roles: tuple[str, ...]
    issued_at: float
    # When the person last proved who they are for this session (OIDC Core's auth_time): the
    # session's sign-in, kept by every refresh. None for a token from before it was carried.
    auth_time: float | None = None
    # The app a person's token was issued to (an OpenID Provider client): its standing also
    # answers to that app's consent cutoff. None: one of tessera's own sessions.
    client_id: str | None = None


class TokenSigner(Protocol):
    def issue(
        self,
        account_id: UUID,
        session_id: UUID,
        roles: tuple[str, ...],
        at: datetime,
        auth_time: datetime,
    ) -> str: ...

    def verify(self, token: str, at: datetime) -> AccessClaims:
        """Raises InvalidAccessToken for anything not signed by us, for us, and still valid."""
        ...

    @property
    def lifetime_seconds(self) -> int: ...

    def issue_mfa_token(self, account_id: UUID, at: datetime) -> str:
        """A short-lived token saying "this account's password was right", good for nothing else."""
        ...

    def verify_mfa_token(self, token: str, at: datetime) -> UUID:
        """The account id; raises InvalidMfaToken for anything else (an access token included)."""
        ...

    def jwks(self) -> dict[str, Any]: ...


class ClaimSigner(Protocol):
    """Signs claims as a JWT with the algorithm asked for (an OpenID client's
    id_token_signed_response_alg); the header names the key (kid) and the token's type (typ)."""

    @property
    def algorithms(self) -> tuple[str, ...]:
        """What it signs with: EdDSA, RS256, ES256."""
        ...

    def sign(self, claims: Mapping[str, Any], algorithm: str, token_type: str) -> str: ...

    def verify(self, token: str, algorithm: str, token_type: str) -> dict[str, Any] | None:
        """The claims, if one of its keys of `algorithm` (current or previous) signed the token
        with `token_type` as its typ; else None. The caller checks the times and issuer."""
        ...

    def jwks(self) -> dict[str, Any]:
        """The public keys that verify what it signs, and what the previous keys signed."""
        ...


class OneTimePasswords(Protocol):
    """Time-based one-time passwords (RFC 6238)."""

    def new_secret(self) -> str: ...

    def provisioning_uri(self, secret: str, account_name: str, issuer: str) -> str: ...

    def accepted_step(self, secret: str, code: str, at: datetime) -> int | None:
        """The time step whose code this is, within one step either side of `at`; else None."""
        ...


class VersionedKey(Protocol):
    """One of the service's own keys, in versions (infrastructure/service_keys.py): the current
    version makes new tokens and tags, an older one only checks what it made, until destroyed."""

    def current(self) -> tuple[int, bytes]:
        """(version number, key) of the version that makes new values."""
        ...

    def version(self, number: int) -> bytes | None:
        """That version's key; None when it never was or has been destroyed."""
        ...


class SecretBox(Protocol):
    """Authenticated encryption under a key from settings, for secrets that events must carry."""

    def seal(self, plaintext: str) -> str: ...

    def open(self, sealed: str) -> str: ...


class DataKeys(Protocol):
    """Each person's data key, kept outside the event log, wrapped by the service's key.

    Personal values in events are sealed under the key of the account they belong to; destroying
    the key (forget) makes every copy of them unreadable, in the store, its backups and its
    exports alike: crypto-shredding. A KMS or Vault can stand behind this port.
    """

    def seal(self, owner: UUID, context: bytes, plaintext: bytes) -> bytes:
        """AES-GCM under the owner's key, made on first use; `context` is authenticated with
        it (a value cannot be moved to another field or account). ForgottenOwner when the owner
        was forgotten: nothing new is sealed for an erased person."""
        ...

    def open(self, owner: UUID, context: bytes, sealed: bytes) -> bytes | None:
        """The plaintext; None when the owner's key was destroyed (or never existed)."""
        ...

    def forget(self, erased: Erased) -> None:
        """Destroys the erased account's key for good and records the erasure in the ledger kept
        with the keys, in one step (neither is ever done without the other); idempotent."""
        ...

    def erasures(self) -> list[Erased]:
        """The ledger: every erasure whose key was destroyed, as the key store remembers it
        (so a restored event store that predates one can be told, and the erasure re-applied)."""
        ...

    def last_erasure(self) -> Erased | None:
        """The ledger's entry with the greatest position: the furthest AccountErased in the log
        the ledger knows of (None when none knows its position)."""
        ...

    def unplaced_erasures(self) -> list[Erased]:
        """The ledger's entries that do not know their AccountErased's position (written before
        the ledger kept it)."""
        ...

    def missing(self, owners: Collection[UUID]) -> set[UUID]:
        """Those of `owners` the key store holds nothing for: neither a key nor its tombstone."""
        ...

    def warm(self, owners: Collection[UUID]) -> None:
        """Makes ready the keys of these owners at once (one read of the key store for all),
        ahead of opening many of their values: a batch of events, a page of the trail. Only
        speed changes; `open` answers as it would have."""
        ...

    def forgotten(self, owners: Collection[UUID]) -> set[UUID]:
        """Those of `owners` whose keys were destroyed, asked of the store itself (never of a
        process's cache)."""
        ...

    def fingerprint(self, kind: str, value: str) -> str:
        """A keyed hash of a normalised value (an email, a username): what uniqueness and rate
        limits are keyed on, so neither needs the value in plain text. Under the version of the
        key that has taken over (see fingerprints)."""
        ...

    def fingerprints(self, kind: str, value: str) -> list[str]:
        """fingerprint() under every live version of the key, newest first: one, except while
        the key is being replaced (after a compromise), when claims are made under each."""
        ...


@dataclass(frozen=True)
class Erased:
    """An entry of the erasure ledger: the account, when it was erased, the position of its
    AccountErased in the event log (None when not known), and the claims (email, username,
    identities) the erasure released: a restored event store where they are still held cannot
    name them any more, since their values were sealed under the destroyed key."""

    account_id: UUID
    at: datetime
    position: int | None = None
    claims: tuple[UUID, ...] = ()


class LostKey(Unavailable):
    """The key store holds nothing for a person whose values are sealed (neither the key nor
    its tombstone): it was restored from a backup older than the person, or the key was lost.
    Nothing new is sealed for them under a new key, which would leave their history unreadable
    beside values that open: the request is refused (a 503) and the log names the account."""

    def __init__(self, owner: UUID) -> None:
        super().__init__(
            f"the key store holds no key for account {owner}, whose values are sealed: restore "
            "the key store from a backup that holds it (docs/backups.md), or erase the account"
        )


class ForgottenOwner(Exception):
    """A value was to be sealed for a person who has been erased."""


class RevocationList(Protocol):
    """Access tokens are self-contained; this is how a revoked session's tokens stop at once."""

    def revoke_session(self, session_id: UUID, ttl: timedelta) -> None:
        """Refuse the session's access tokens for `ttl` (until the last of them has expired);
        an entry already there for longer keeps its own end."""
        ...

    def revoke_sessions_before(
        self, account_id: UUID, cutoff: datetime, ttl: timedelta, keep: UUID | None = None
    ) -> None:
        """Refuse the account's access tokens issued up to `cutoff`, but those of session `keep`."""
        ...

    def revoke_app_sessions_before(
        self, account_id: UUID, client_id: str, cutoff: datetime, ttl: timedelta
    ) -> None:
        """Refuse what the account's sessions with the app `client_id` had up to `cutoff` (its
        consent withdrawn): access tokens issued, and refresh chains started, up to then. `ttl`
        outlives the longest session, since refresh chains ask too."""
        ...

    async def standing(self, claims: AccessClaims) -> Standing:
        """Whether the token's session is revoked, and what the account's marks say now: the
        one look-up an authenticated request makes of shared state."""
        ...

    def standing_now(self, claims: AccessClaims) -> Standing:
        """standing(), for a caller in a thread of its own (a code exchange in Authlib's)."""
        ...


@dataclass(frozen=True)
class Caller(AccessClaims):
    """The claims of a token that is still good, and what the shared store said of its account
    when the request was authenticated."""

    mark: str | None = None
    written: int = 0


@dataclass(frozen=True)
class Standing:
    """What the shared store says of a token's session and account at the moment of asking."""

    revoked: bool
    # The account's change mark: a copy of the account made under another mark may be stale.
    # None when no mark is known (never written, expired, or the store was emptied).
    mark: str | None
    # The last position in the event log that this account's own commands (or commands about
    # it) recorded; its reads of read models wait for the projections to pass it. 0: none known.
    written: int
    # The session's own end is on record (revoke_session), not only a cutoff of its account's
    # or its app's: a code's second use leaves one for the session its first use is starting.
    ended: bool = False


class ChangeMarks(Protocol):
    """Tells every process that an account changed, where the revocation check already looks.

    A save marks the account as changing before it commits and as changed (its new version)
    after; a copy made under any other mark is reloaded. Should the process die between commit
    and the second mark, the "changing" mark outlives it (until it expires), so no process
    trusts an old copy meanwhile.
    """

    def changing(self, account_ids: Sequence[UUID]) -> str:
        """Marks the accounts as changing; returns the token that the matching changed() needs."""
        ...

    def changed(self, token: str, versions: dict[UUID, int], written: dict[UUID, int]) -> None:
        """The accounts' new versions (applied only over this save's own "changing" mark or an
        older version) and, for each principal, the log position its save reached."""
        ...

    def settle(self, account_id: UUID, version: int) -> None:
        """Marks an account that has no mark (forgotten, or the store was emptied) with the
        version just read; never overwrites a mark a save set meanwhile."""
        ...


@dataclass(frozen=True)
class Chain:
    """A session's chain of refresh tokens, kept in the shared store rather than the event log:
    rotating a token needs no global order, only an atomic step from one turn to the next."""

    account_id: UUID
    started_at: datetime
    password_generation: int  # of the password the session's login verified
    turn: int  # of the token now current (0: the one its login issued)
    expires_at: datetime  # idle expiry, never past the session's maximum age
    ends_at: datetime  # the session's maximum age
    recorded_at: datetime  # when the event log last recorded this session's rotations
    # An app's session that ends when the browser session it came from signs out (not one
    # given offline_access): that browser session. None for every other chain.
    browser_session_id: UUID | None = None


@dataclass(frozen=True)
class Turn:
    """What one step of a chain found. `chain` is the chain after the step (None: no chain of
    that session, or it expired or ended); `spent`: the token presented was of an earlier turn;
    `record`: this step is the one that should record the rotations since the last record;
    `again`: the token presented was turned into the current one within the grace interval,
    so that current one is given again; `mark`: the account's change mark, read in the same
    round trip."""

    chain: Chain | None
    turned: bool = False
    spent: bool = False
    record: bool = False
    mark: str | None = None
    again: bool = False


class RefreshChains(Protocol):
    """Where each session's current refresh token stands, shared by every process (Redis when
    configured, else the service's database). Only digests of tokens are kept."""

    def begin(self, session_id: UUID, chain: Chain, digest: str) -> None:
        """A new session's chain, its turn-0 token `digest`."""
        ...

    async def turn(
        self,
        session_id: UUID,
        turn: int,
        digest: str,
        next_digest: str,
        at: datetime,
        idle: timedelta,
        record_every: timedelta,
        grace: timedelta,
    ) -> Turn:
        """Atomically: if `digest` is the current token of turn `turn` and the chain has not
        expired, the token of turn + 1 (`next_digest`) becomes current and the idle expiry moves
        to `at` + `idle` (never past ends_at); a `turn` earlier than the current one is spent,
        but for the token turned last, less than `grace` ago, into `next_digest` (`again`:
        nothing changes). `record` is set (and recorded_at moved to `at`) on the chain's first
        turn and when the last record is older than `record_every`."""
        ...

    def end(self, session_ids: Sequence[UUID]) -> None:
        """The sessions' chains are over: none of their tokens will turn again."""
        ...

    def online_of(self, browser_session_id: UUID) -> list[UUID]:
        """The app sessions begun with `browser_session_id` whose chains may still turn."""
        ...


@dataclass(frozen=True)
class OutgoingMail:
    key: str  # idempotency key, also the Message-ID's local part
    to: str
    subject: str
    text: str
    html: str


class MailTransport(Protocol):
    def send(self, mail: OutgoingMail) -> None:
        """Hands the mail over; raises TransientMailError when a later try may succeed."""
        ...


class TransientMailError(Exception):
    """The mail server (or the path to it) failed in a way worth retrying: 4xx, a timeout."""


class MailRenderer(Protocol):
    def render(self, kind: str, context: dict[str, Any]) -> tuple[str, str, str]:
        """(subject, text, html) for a kind of mail; the html part is autoescaped."""
        ...


class MailQueue(Protocol):
    def enqueue(self, key: str) -> None:
        """Asks a worker to deliver the mail recorded under this key (at least once)."""
        ...


@dataclass(frozen=True)
class PendingMail:
    key: str
    originator_id: UUID
    originator_version: int
    # Whose mail it is (a sign-in's originator is its session): erasure finds it by this.
    # None on a row recorded before the ledger kept it.
    account_id: UUID | None = None


class MailDrop(Protocol):
    """Where mail that was sent stays as files (the embedded default's DATA_DIR/mail)."""

    def remove(self, keys: Iterable[str]) -> None:
        """Deletes the files of these deliveries, those that exist."""
        ...


class DeliveryBusy(Exception):
    """Another worker holds this delivery; try again after its claim expires."""


class OneTimeValues(Protocol):
    """Short-lived values, keyed by random bytes, each taken at most once: WebAuthn challenges
    between their options and their answer (the value: the ceremony, "register:<account id>",
    "sign_in", "second_factor:<account id>"), OpenID Connect sign-in states and codes,
    authorization codes and pending authorization requests."""

    def put(self, key: bytes, value: str, expires_at: datetime) -> None: ...

    def claim_then_take(
        self, claim: bytes, value: str, expires_at: datetime, key: bytes, at: datetime
    ) -> tuple[bool, str | None]:
        """Puts `value` under `claim` unless that key is held already (expired or not), then
        takes: `key` if this call put the claim, else the claim that was there. Whether it
        put the claim, and what it took (as take() answers). Of callers racing with one claim,
        exactly one puts it. In one round trip where the store has scripts (Redis)."""
        ...

    def take(self, key: bytes, at: datetime) -> str | None:
        """The value put under `key`, removed in the same step so that no two callers ever take
        one; None when unknown, already taken or expired at `at`."""
        ...


@dataclass(frozen=True)
class Ceremony:
    challenge: bytes
    options: dict[str, Any]  # W3C WebAuthn Level 3 JSON (parse*OptionsFromJSON takes it)


@dataclass(frozen=True)
class NewCredential:
    credential_id: str  # base64url
    public_key: str  # COSE_Key, base64url
    sign_count: int
    transports: tuple[str, ...]


@dataclass(frozen=True)
class Assertion:
    """What an assertion says of itself, read before anything is verified."""

    credential_id: str  # base64url
    user_handle: bytes | None
    challenge: bytes


class CredentialRefused(Exception):
    """A WebAuthn response that is malformed or does not verify."""


class WebAuthn(Protocol):
    """The relying party's side of the WebAuthn ceremonies (RP ID and origins from settings)."""

    def creation_options(
        self, user_id: bytes, user_name: str, display_name: str, exclude: Sequence[str]
    ) -> Ceremony: ...

    def request_options(self, allow: Sequence[str] | None, require_verification: bool) -> Ceremony:
        """`allow` None: any discoverable credential of this RP (the account comes from it)."""
        ...

    def registration_challenge(self, credential: dict[str, Any]) -> bytes:
        """The challenge in the response's clientDataJSON; CredentialRefused if unreadable."""
        ...

    def read_assertion(self, credential: dict[str, Any]) -> Assertion: ...

    def verify_registration(
        self, credential: dict[str, Any], challenge: bytes
    ) -> NewCredential: ...

    def verify_assertion(
        self,
        credential: dict[str, Any],
        challenge: bytes,
        public_key: str,
        require_verification: bool,
    ) -> int:
        """The authenticator's new signature counter (the account judges it); raises
        CredentialRefused for anything that does not verify."""
        ...


@dataclass(frozen=True)
class ProviderIdentity:
    """What a provider vouched for, once its answer verified (the ID token, or its user API)."""

    subject: str  # `sub`, or GitHub's numeric user id: stable for the person at that provider
    email: str | None
    email_verified: bool
    hints: tuple[str | None, ...]  # preferred_username, login, name: a username's stem
    amr: tuple[str, ...]  # RFC 8176 authentication methods, as the provider said
    acr: str | None


class ProviderRefused(Exception):
    """The provider's answer did not verify: the code was refused, or the ID token's
    signature, issuer, audience, lifetime, nonce or algorithm is wrong."""


class ProviderDown(Exception):
    """The provider did not answer in time, or answered with a server error."""


class IdentityProviders(Protocol):
    """The client side of OpenID Connect and OAuth 2.0, one configured provider by name."""

    def names(self) -> Sequence[str]: ...

    def label(self, provider: str) -> str:
        """The provider's name as a person knows it ("Google")."""
        ...

    def trusts_mfa(self, provider: str) -> bool:
        """Whether a multi-factor sign-in at the provider (amr/acr) stands for tessera's own."""
        ...

    def authorization_url(
        self, provider: str, callback: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """Where to send the browser: the code flow with PKCE (S256), `state` and `nonce`."""
        ...

    def identify(
        self, provider: str, code: str, callback: str, nonce: str, code_verifier: str
    ) -> ProviderIdentity:
        """Redeems the code and verifies what comes back; ProviderRefused or ProviderDown."""
        ...


@dataclass(frozen=True)
class WebhookPost:
    """One delivery as it goes out: where, the Standard Webhooks headers, and the body bytes."""

    url: str
    headers: dict[str, str]
    body: bytes


class WebhookTargetRefused(Exception):
    """The receiver's address (as resolved for this connection) is one the service may not
    reach: private, loopback, link-local or metadata, without the setting that allows it."""


class WebhookPoster(Protocol):
    """Posts deliveries: no redirect followed, a bounded wait, at most a bounded part of each
    answer read (and never logged)."""

    def post(self, delivery: WebhookPost) -> int:
        """The status code; raises WebhookTargetRefused, or OSError (TimeoutError among
        them) when there was no answer."""
        ...

    def post_each(
        self, deliveries: Sequence[WebhookPost], budget: timedelta
    ) -> list[int | Exception | None]:
        """Posts them (one receiver's, independent of each other: a few at once, over
        connections kept open between them): for each, its status code, the error that left it
        without an answer, or None when it was not tried (none starts after the first without
        an answer, or once `budget` has run out)."""
        ...


class WebhookSigner(Protocol):
    """Standard Webhooks' `webhook-signature` value of one secret (whsec_…) for a message."""

    def sign(self, secret: str, message_id: str, at: datetime, body: bytes) -> str: ...


class WebhookQueue(Protocol):
    """Where the deliveries wait, per endpoint and account, in log order (queued by the feed,
    claimed by couriers); and the message that wakes a courier for some of one endpoint's
    lanes."""

    def enqueue(self, lanes: list[str]) -> None: ...
