"""What admins do to the OpenID Provider's clients, and a client proving who it is. Each change
names its operator; a secret is shown once, when made, and only its digest is kept."""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import Clock
from application.tokens import digest
from domain.client import DIRECTORY_ID, ClientDirectory, ClientSettings, OAuthClient
from domain.errors import ClientNotFound, InvalidClient

_SECRET_BYTES = 32  # 256 random bits: nothing to guess, so a plain digest keeps it
# False while a caller on the event loop may not wait for the event store (cached_only()).
_STORE_READS: ContextVar[bool] = ContextVar("client_store_reads", default=True)


class NotCached(Exception):
    """What cached_only() raises where an answer needs the event store: the caller asks again
    where waiting is allowed (a thread)."""


@dataclass(frozen=True)
class ClientView:
    """A client as admins read it: never its secret, nor the secret's digest."""

    client_id: str
    name: str
    public: bool
    trusted: bool
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    scopes: list[str]
    id_token_signed_response_alg: str
    resources: list[str]
    web_origins: list[str]  # as registered, or the origins of the redirect URIs
    registered_at: datetime
    updated_at: datetime
    # While the secret before the last rotation still works (SECRET_OVERLAP); None otherwise.
    previous_secret_valid_until: datetime | None

    @classmethod
    def of(cls, client: OAuthClient, at: datetime) -> ClientView:
        settings = client.settings
        until = client.previous_valid_until
        return cls(
            client_id=str(client.id),
            name=settings.name,
            public=settings.public,
            trusted=settings.trusted,
            redirect_uris=list(settings.redirect_uris),
            post_logout_redirect_uris=list(settings.post_logout_redirect_uris),
            grant_types=list(settings.grant_types),
            scopes=list(settings.scopes),
            id_token_signed_response_alg=settings.id_token_signed_response_alg,
            resources=list(settings.resources),
            web_origins=list(settings.allowed_origins),
            registered_at=client.registered_at,
            updated_at=client.modified_on,
            previous_secret_valid_until=until if until is not None and at < until else None,
        )


@dataclass(frozen=True)
class IssuedSecret:
    """The answer that shows a secret, the one time it is shown. None for a public client."""

    client_id: str
    client_secret: str | None


class Clients:
    """`cache_seconds`: how long this process authenticates a client, and answers for its
    tokens, from what it read of it before (the secret's digest and the client's settings):
    the calls APIs make most then read nothing from the event store. A client removed or a
    secret rotated out by another process stops working here within that long; in this
    process, at once."""

    def __init__(self, log: EventLog, clock: Clock, cache_seconds: float = 10.0) -> None:
        self._log = log
        self._clock = clock
        self._changes = itertools.count(1)
        # Counts this process's changes to its clients, so what is cached of them (their web
        # origins) is read again at the next use.
        self.revision = 0
        self._cache_for = timedelta(seconds=cache_seconds)
        self._known: dict[str, tuple[OAuthClient, datetime]] = {}  # by id: the client, read at

    @retried_on_conflict
    def register(self, settings: ClientSettings, operator: str) -> IssuedSecret:
        """A new client, listed in the directory in the same save (a lost race for the
        directory reruns the whole registration, with a fresh id and secret)."""
        now = self._clock.now()
        secret = None if settings.public else secrets.token_urlsafe(_SECRET_BYTES)
        client = OAuthClient.register(
            uuid4(), settings, None if secret is None else digest(secret), operator, now
        )
        directory = self._directory(now)
        directory.listed(client_id=client.id, timestamp=now)
        self._log.save(directory, client)
        self._changed()
        return IssuedSecret(str(client.id), secret)

    def list(self) -> list[ClientView]:
        now = self._clock.now()
        directory = self._log.find(DIRECTORY_ID, ClientDirectory)
        found = [
            self._log.find(client_id, OAuthClient)
            for client_id in (directory.client_ids if directory else [])
        ]
        live = [ClientView.of(c, now) for c in found if c is not None and not c.removed]
        return sorted(live, key=lambda view: (view.name.casefold(), view.client_id))

    def client(self, client_id: str) -> ClientView:
        return ClientView.of(self._find(client_id), self._clock.now())

    @retried_on_conflict
    def update(self, client_id: str, changes: dict[str, Any], operator: str) -> ClientView:
        client = self._find(client_id)
        now = self._clock.now()
        if client.update(changes, operator, now):
            self._log.save(client)
            self._changed()
            self._known.pop(client_id, None)
        return ClientView.of(client, now)

    @retried_on_conflict
    def rotate_secret(self, client_id: str, operator: str) -> IssuedSecret:
        client = self._find(client_id)
        now = self._clock.now()
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        client.rotate_secret(digest(secret), operator, now)
        self._log.save(client)
        self._known.pop(client_id, None)
        return IssuedSecret(str(client.id), secret)

    @retried_on_conflict
    def remove(self, client_id: str, operator: str) -> None:
        client = self._find(client_id)
        now = self._clock.now()
        client.remove(operator, now)
        directory = self._directory(now)
        directory.unlist(client.id, now)
        self._log.save(directory, client)
        self._changed()
        self._known.pop(client_id, None)

    @staticmethod
    @contextlib.contextmanager
    def cached_only() -> Iterator[None]:
        """Within it, answers come only from what this process read of its clients: a call
        that would read the event store raises NotCached instead. For callers on the event
        loop, which must not wait for a database: the calls APIs make most (introspection)
        then skip the hand-off to a thread and back, a fifth of their CPU."""
        token = _STORE_READS.set(False)
        try:
            yield
        finally:
            _STORE_READS.reset(token)

    def authenticate(self, client_id: str, secret: str | None) -> ClientView:
        """The client whose id and secret these are (None for a public client, which has
        none), or InvalidClient: unknown, removed, or the wrong secret all look alike. A
        secret this process does not know the client by (a rotation since it read it) is
        checked against the event store, so a new secret works at once."""
        presented = None if secret is None else digest(secret)
        now = self._clock.now()
        cached = self._cached(client_id, now)
        if cached is not None:
            with contextlib.suppress(InvalidClient):
                cached.authenticate(presented, now)
                return ClientView.of(cached, now)
        try:
            client = self._read(client_id, now)
        except ClientNotFound:
            raise InvalidClient from None
        client.authenticate(presented, now)
        return ClientView.of(client, now)

    def vouches(self, client_id: str, secret: str | None) -> bool:
        """Whether this process's copy of the client (read at most `cache_seconds` ago) proves
        these credentials, without reading the event store: an attempt it vouches for cannot
        fail, so the throttle on failed authentications holds no place in the allowance for it
        (a busy API's requests in flight would otherwise fill it)."""
        now = self._clock.now()
        cached = self._cached(client_id, now)
        if cached is None:
            return False
        try:
            cached.authenticate(None if secret is None else digest(secret), now)
        except InvalidClient:
            return False
        return True

    def known(self, client_id: str) -> ClientView:
        """client(), as this process read it at most `cache_seconds` ago: for the calls made
        on every request (whether a token's client is still registered)."""
        now = self._clock.now()
        client = self._cached(client_id, now) or self._read(client_id, now)
        return ClientView.of(client, now)

    def _cached(self, client_id: str, now: datetime) -> OAuthClient | None:
        found = self._known.get(client_id)
        if found is None:
            return None
        client, read_at = found
        return client if read_at <= now < read_at + self._cache_for else None

    def _read(self, client_id: str, now: datetime) -> OAuthClient:
        try:
            client = self._find(client_id)
        except ClientNotFound:
            self._known.pop(client_id, None)
            raise
        self._known[client_id] = (client, now)
        return client

    def _changed(self) -> None:
        self.revision = next(self._changes)  # one step, even from threads at once

    def _find(self, client_id: str) -> OAuthClient:
        if not _STORE_READS.get():
            raise NotCached
        try:
            aggregate_id = UUID(client_id)
        except ValueError:
            raise ClientNotFound from None
        client = self._log.find(aggregate_id, OAuthClient)
        if client is None or client.removed:
            raise ClientNotFound
        return client

    def _directory(self, at: datetime) -> ClientDirectory:
        return self._log.find(DIRECTORY_ID, ClientDirectory) or ClientDirectory.open(at)
