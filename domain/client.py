"""The OAuthClient aggregate: an app that may send people here to sign in (OpenID Connect), and
the rules on what it registers, how its redirect URIs match, and how its secret is checked."""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import ClientNotFound, FieldError, Invalid, InvalidClient

GRANTS = ("authorization_code", "refresh_token", "client_credentials")
STANDARD_SCOPES = ("openid", "profile", "email", "offline_access")
DEFAULT_SCOPES = ("openid", "profile", "email")
SIGNING_ALGORITHMS = ("RS256", "ES256", "EdDSA")  # RS256: the one OpenID Connect requires
# After a rotation the previous secret still works this long, so an app can be redeployed with
# the new one without an outage; a second rotation within it ends the oldest at once.
SECRET_OVERLAP = timedelta(hours=24)

MAX_NAME = 100
MAX_URIS = 20
MAX_URI = 2000
MAX_SCOPES = 50
MAX_SCOPE = 64
# RFC 6749, 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(rf"[\x21\x23-\x5b\x5d-\x7e]{{1,{MAX_SCOPE}}}")
# Loopback IP literals only (RFC 8252, 8.3): "localhost" may resolve elsewhere (a hosts file, a
# resolver that answers for it) and be reached by another program, so it is refused over http.
_LOOPBACK_HOSTS = ("127.0.0.1", "[::1]")
# A native app's loopback redirect URI, parsed from the raw text rather than by a URL parser,
# so what is compared is exactly what was sent: host literal, optional port, then the rest.
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?([/?][^#\s]*)?")


@dataclass(frozen=True)
class ClientSettings:
    """What an admin registers for a client: everything but its id and secret."""

    name: str
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code",)
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    public: bool = False
    trusted: bool = False
    id_token_signed_response_alg: str = "RS256"  # noqa: S105 - an algorithm's name
    resources: tuple[str, ...] = ()  # RFC 8707 audiences its access tokens may name
    web_origins: tuple[str, ...] | None = None  # None: the origins of its redirect URIs

    def checked(self) -> ClientSettings:
        """The settings, normalised (name trimmed, lists without duplicates, in order), or
        Invalid naming every field that breaks a rule."""
        errors: list[FieldError] = []
        name = unicodedata.normalize("NFC", self.name).strip()
        if not name or len(name) > MAX_NAME or _has_control(name):
            errors.append(FieldError("name", "format", f"1 to {MAX_NAME} printable characters"))
        redirects = _unique(self.redirect_uris)
        posts = _unique(self.post_logout_redirect_uris)
        errors += _uri_errors("redirect_uris", redirects)
        errors += _uri_errors("post_logout_redirect_uris", posts)
        grants = _unique(self.grant_types)
        errors += _grant_errors(grants, redirects, self.public)
        scopes = _unique(self.scopes)
        errors += _scope_errors(scopes, grants)
        if self.id_token_signed_response_alg not in SIGNING_ALGORITHMS:
            errors.append(
                FieldError(
                    "id_token_signed_response_alg",
                    "choice",
                    f"one of {', '.join(SIGNING_ALGORITHMS)}",
                )
            )
        resources = _unique(self.resources)
        errors += _resource_errors(resources)
        origins = None if self.web_origins is None else _unique(self.web_origins)
        errors += _origin_errors(origins or ())
        if errors:
            raise Invalid(*errors)
        return replace(
            self,
            name=name,
            redirect_uris=redirects,
            post_logout_redirect_uris=posts,
            grant_types=grants,
            scopes=scopes,
            resources=resources,
            web_origins=origins,
        )

    def state(self) -> dict[str, Any]:
        """As the events carry it: JSON values only."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in state.items()}

    @classmethod
    def of(cls, state: dict[str, Any]) -> ClientSettings:
        names = {f.name for f in fields(cls)}
        known: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in state.items() if k in names
        }
        return cls(**known)

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """The web origins a browser app of this client may call from (CORS)."""
        if self.web_origins is not None:
            return self.web_origins
        return _unique(origin_of(uri) for uri in self.redirect_uris)


class OAuthClient(Aggregate):
    """A registered app. Its id is its `client_id`; only a digest of its secret is kept."""

    ClientRegistered: ClassVar[type[Any]]

    @event("ClientRegistered")
    def __init__(
        self,
        id: UUID,
        settings: dict[str, Any],
        secret_digest: str | None,  # None for a public client, which has no secret
        operator: str,
        timestamp: datetime,
    ) -> None:
        self.settings_state = settings
        self.secret_digest = secret_digest
        self.previous_digest: str | None = None
        self.previous_valid_until: datetime | None = None
        self.removed = False

    @classmethod
    def register(
        cls,
        client_id: UUID,
        settings: ClientSettings,
        secret_digest: str | None,
        operator: str,
        at: datetime,
    ) -> OAuthClient:
        checked = settings.checked()
        if checked.public != (secret_digest is None):
            raise ValueError("a confidential client has a secret, a public one none")
        return cls(
            id=client_id,
            settings=checked.state(),
            secret_digest=secret_digest,
            operator=operator,
            timestamp=at,
        )

    @property
    def settings(self) -> ClientSettings:
        return ClientSettings.of(self.settings_state)

    @property
    def registered_at(self) -> datetime:
        return self.created_on

    def update(self, changes: dict[str, Any], operator: str, at: datetime) -> bool:
        """Applies the changed settings; False when they change nothing. The kind of client
        (public or confidential) is fixed: a public client made confidential would have no
        secret, and a confidential one made public would stop proving who it is."""
        self._live()
        unknown = set(changes) - {f.name for f in fields(ClientSettings)}
        if unknown:
            raise Invalid(*(FieldError(k, "unknown", "not a client setting") for k in unknown))
        if "public" in changes and changes["public"] != self.settings.public:
            raise Invalid(
                FieldError("public", "fixed", "fixed at registration: register a new client")
            )
        new = replace(self.settings, **changes).checked()
        if new == self.settings:
            return False
        self._client_updated(settings=new.state(), operator=operator, timestamp=at)
        return True

    @event("ClientUpdated")
    def _client_updated(self, settings: dict[str, Any], operator: str, timestamp: datetime) -> None:
        self.settings_state = settings

    def rotate_secret(self, secret_digest: str, operator: str, at: datetime) -> None:
        """The new secret from now on; the current one still works for SECRET_OVERLAP."""
        self._live()
        if self.secret_digest is None:
            raise Invalid(FieldError("client_id", "public", "a public client has no secret"))
        self._client_secret_rotated(
            secret_digest=secret_digest,
            previous_valid_until=at + SECRET_OVERLAP,
            operator=operator,
            timestamp=at,
        )

    @event("ClientSecretRotated")
    def _client_secret_rotated(
        self, secret_digest: str, previous_valid_until: datetime, operator: str, timestamp: datetime
    ) -> None:
        self.previous_digest = self.secret_digest
        self.previous_valid_until = previous_valid_until
        self.secret_digest = secret_digest

    def remove(self, operator: str, at: datetime) -> None:
        self._live()
        self._client_removed(operator=operator, timestamp=at)

    @event("ClientRemoved")
    def _client_removed(self, operator: str, timestamp: datetime) -> None:
        self.removed = True

    def tokens_issued(self, count: int, since: datetime, at: datetime) -> None:
        """Records `count` access tokens issued to the client by client_credentials since
        `since`: the trail shows machine tokens without an event per token (a busy API may ask
        for hundreds a second), as it shows refresh rotations."""
        self._live()
        self._client_tokens_issued(count=count, since=since, timestamp=at)

    @event("ClientTokensIssued")
    def _client_tokens_issued(self, count: int, since: datetime, timestamp: datetime) -> None:
        pass

    def authenticate(self, presented_digest: str | None, at: datetime) -> None:
        """InvalidClient unless the client is live and the digest is its secret's (or, within
        the overlap after a rotation, the previous secret's). A public client proves nothing
        with a secret, so none may be presented for it."""
        if self.removed:
            raise InvalidClient
        if self.secret_digest is None:
            if presented_digest is not None:
                raise InvalidClient
            return
        if presented_digest is None:
            raise InvalidClient
        current = hmac.compare_digest(presented_digest, self.secret_digest)
        previous = (
            self.previous_digest is not None
            and self.previous_valid_until is not None
            and at < self.previous_valid_until
            and hmac.compare_digest(presented_digest, self.previous_digest)
        )
        if not (current or previous):
            raise InvalidClient

    def _live(self) -> None:
        if self.removed:
            raise ClientNotFound


def redirect_uri_matches(registered: Iterable[str], presented: str) -> bool:
    """Whether `presented` is one of the client's registered redirect URIs: string equality,
    except that a native app's loopback URI (http://127.0.0.1 or http://[::1]) matches on any
    port, since the app listens on whichever one it gets (RFC 8252, 7.3)."""
    loopback = _LOOPBACK.fullmatch(presented)
    for uri in registered:
        if uri == presented:
            return True
        if loopback is None:
            continue
        mine = _LOOPBACK.fullmatch(uri)
        if mine is None:
            continue
        port = loopback.group(2)
        if port is not None and not 0 < int(port) < 65536:
            return False
        if mine.group(1) == loopback.group(1) and (mine.group(3) or "") == (
            loopback.group(3) or ""
        ):
            return True
    return False


def origin_of(uri: str) -> str:
    """scheme://host[:port] of an absolute URI, as a browser sends it in `Origin`."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c).startswith("C") for c in text)


def _uri_problem(uri: str) -> str | None:
    """Why `uri` cannot be a redirect URI, or None when it can."""
    if len(uri) > MAX_URI or _has_control(uri) or any(c.isspace() for c in uri):
        return f"at most {MAX_URI} characters, no spaces or control characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return "not a URI"
    if not parts.scheme or not parts.netloc or not parts.hostname:
        return "must be absolute"
    if "#" in uri:
        return "must have no fragment"
    if "@" in parts.netloc:
        return "must have no user name or password"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _LOOPBACK.fullmatch(uri):
        return None
    if parts.scheme == "http" and parts.hostname == "localhost":
        return "use http://127.0.0.1 or http://[::1] rather than localhost (RFC 8252, 8.3)"
    return "must be https, or http on 127.0.0.1 or [::1] for a native app"


def _uri_errors(name: str, uris: Sequence[str]) -> list[FieldError]:
    if len(uris) > MAX_URIS:
        return [FieldError(name, "count", f"at most {MAX_URIS}")]
    return [
        FieldError(f"{name}[{i}]", "uri", problem)
        for i, uri in enumerate(uris)
        if (problem := _uri_problem(uri)) is not None
    ]


def _grant_errors(
    grants: Sequence[str], redirects: Sequence[str], public: bool
) -> list[FieldError]:
    errors = []
    if not grants:
        errors.append(FieldError("grant_types", "required", "at least one grant"))
    unknown = [g for g in grants if g not in GRANTS]
    if unknown:
        errors.append(FieldError("grant_types", "choice", f"each one of {', '.join(GRANTS)}"))
    if "authorization_code" in grants and not redirects:
        errors.append(
            FieldError("redirect_uris", "required", "the authorization code grant needs one")
        )
    if "refresh_token" in grants and "authorization_code" not in grants:
        errors.append(
            FieldError("grant_types", "refresh", "refresh_token comes with authorization_code")
        )
    if public and "client_credentials" in grants:
        errors.append(
            FieldError("grant_types", "public", "a public client has no client_credentials grant")
        )
    return errors


def _scope_errors(scopes: Sequence[str], grants: Sequence[str]) -> list[FieldError]:
    if len(scopes) > MAX_SCOPES:
        return [FieldError("scopes", "count", f"at most {MAX_SCOPES}")]
    errors = [
        FieldError(f"scopes[{i}]", "format", f"a scope token of 1 to {MAX_SCOPE} characters")
        for i, scope in enumerate(scopes)
        if not _SCOPE_TOKEN.fullmatch(scope)
    ]
    if "offline_access" in scopes and "refresh_token" not in grants:
        errors.append(
            FieldError("scopes", "offline_access", "offline_access needs the refresh_token grant")
        )
    return errors


def _resource_errors(resources: Sequence[str]) -> list[FieldError]:
    """RFC 8707, 2: a resource is an absolute URI without a fragment."""
    if len(resources) > MAX_URIS:
        return [FieldError("resources", "count", f"at most {MAX_URIS}")]
    errors = []
    for i, uri in enumerate(resources):
        try:
            parts = urlsplit(uri)
        except ValueError:
            parts = None
        if (
            parts is None
            or not parts.scheme
            or "#" in uri
            or len(uri) > MAX_URI
            or _has_control(uri)
            or any(c.isspace() for c in uri)
        ):
            errors.append(FieldError(f"resources[{i}]", "uri", "an absolute URI, no fragment"))
    return errors


def _origin_errors(origins: Sequence[str]) -> list[FieldError]:
    if len(origins) > MAX_URIS:
        return [FieldError("web_origins", "count", f"at most {MAX_URIS}")]
    return [
        FieldError(f"web_origins[{i}]", "origin", "scheme://host[:port], https or loopback http")
        for i, origin in enumerate(origins)
        if _uri_problem(origin) is not None or origin_of(origin) != origin
    ]


# The one directory of clients: a fixed id, so every process finds it without an index.
DIRECTORY_ID = UUID("6f0c6a52-1c1e-5b8e-9a57-6f3d2c4b7a10")


class ClientDirectory(Aggregate):
    """The ids of the live clients, for listing them on either store without a projection.
    Saved with each registration and removal, so it never disagrees with the clients."""

    @event("DirectoryOpened")
    def __init__(self, id: UUID, timestamp: datetime) -> None:
        self.client_ids: list[UUID] = []

    @classmethod
    def open(cls, at: datetime) -> ClientDirectory:
        return cls(id=DIRECTORY_ID, timestamp=at)

    @event("ClientListed")
    def listed(self, client_id: UUID, timestamp: datetime) -> None:
        self.client_ids.append(client_id)

    def unlist(self, client_id: UUID, at: datetime) -> None:
        if client_id in self.client_ids:
            self._client_unlisted(client_id=client_id, timestamp=at)

    @event("ClientUnlisted")
    def _client_unlisted(self, client_id: UUID, timestamp: datetime) -> None:
        self.client_ids.remove(client_id)
