"""Access tokens a client gets for itself (OAuth 2.0 client_credentials): issued as RFC 9068
JWTs that an API verifies offline, introspected (RFC 7662) and revoked (RFC 7009) here.

Nothing here parses the protocol: the authorization server (Authlib, in interfaces) has read
the request and authenticated the client before any of these is called."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from application.clients.registry import Clients, ClientView
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import AccessClaims, ClaimSigner, Clock, RevocationList
from domain.client import STANDARD_SCOPES, OAuthClient
from domain.errors import ClientNotFound, NotYourToken, ResourceNotAllowed, ScopeNotAllowed

ALGORITHM = "RS256"  # what every JWT library verifies; RFC 9068 names no other default
TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068, 2.1: never taken for an ID token or ours
# The trail shows a client's first token, then a count at most this often (per process).
RECORD_EVERY = timedelta(minutes=1)


def api_scopes(client: ClientView) -> list[str]:
    """The scopes a client may ask for without a person: its own APIs', not OpenID's."""
    return [scope for scope in client.scopes if scope not in STANDARD_SCOPES]


@dataclass(frozen=True)
class MachineToken:
    access_token: str
    expires_in: int
    scope: str


@dataclass(frozen=True)
class _Tally:
    count: int
    since: datetime
    recorded_at: datetime | None


class MachineTokens:
    def __init__(
        self,
        clients: Clients,
        log: EventLog,
        signer: ClaimSigner,
        revocations: RevocationList,
        clock: Clock,
        issuer: str,
        lifetime_seconds: int,
    ) -> None:
        self._clients = clients
        self._log = log
        self._signer = signer
        self._revocations = revocations
        self._clock = clock
        self._issuer = issuer
        self._lifetime = lifetime_seconds
        self._tallies: dict[str, _Tally] = {}
        self._lock = threading.Lock()

    def scope_for(self, client: ClientView, requested: list[str] | None) -> list[str]:
        """The scope to grant: what was asked for, every scope of it registered for the client
        as an API scope (ScopeNotAllowed otherwise); all of those when nothing was asked."""
        allowed = api_scopes(client)
        if not requested:
            return allowed
        refused = [scope for scope in requested if scope not in allowed]
        if refused:
            raise ScopeNotAllowed(" ".join(refused))
        return [scope for scope in allowed if scope in requested]

    def audience_for(self, client: ClientView, resources: list[str]) -> str:
        """The API the token is for: the RFC 8707 resource asked for, if registered for the
        client; tessera's own issuer when none was asked."""
        if not resources:
            return self._issuer
        if len(resources) > 1 or resources[0] not in client.resources:
            raise ResourceNotAllowed(" ".join(resources))
        return resources[0]

    def issue(self, client: ClientView, scope: list[str], audience: str) -> MachineToken:
        now = self._clock.now()
        issued_at = int(now.timestamp())
        claims = {
            "iss": self._issuer,
            "sub": client.client_id,  # RFC 9068, 2.2: the client itself, no person involved
            "client_id": client.client_id,
            "aud": audience,
            "scope": " ".join(scope),
            "jti": str(uuid4()),
            "iat": issued_at,
            "exp": issued_at + self._lifetime,
        }
        token = self._signer.sign(claims, ALGORITHM, TOKEN_TYPE)
        self._count(client.client_id, now)
        return MachineToken(token, self._lifetime, " ".join(scope))

    async def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662's answer: the token's claims while it is ours, unexpired, unrevoked and its
        client still registered; else only `active: false`, whatever the reason."""
        # The client may be read from the event store: off the event loop, which serves the rest.
        return await self.unless_revoked(await asyncio.to_thread(self.inspect, token))

    def inspect(self, token: str) -> dict[str, Any]:
        """introspect()'s answer but for the revocation store, which unless_revoked() asks:
        synchronous, for a caller already off the event loop (it may read the event store)."""
        claims = self._valid(token)
        if claims is None:
            return {"active": False}
        return {"active": True, "token_type": "Bearer", **claims}

    async def unless_revoked(self, answer: dict[str, Any]) -> dict[str, Any]:
        """inspect()'s answer, or `active: false` when the token has been revoked since."""
        if not answer.get("active") or await self._revoked(answer):
            return {"active": False}
        return answer

    def _valid(self, token: str) -> dict[str, Any] | None:
        claims = self._signer.verify(token, ALGORITHM, TOKEN_TYPE)
        if claims is None or claims.get("iss") != self._issuer:
            return None
        try:
            now = self._clock.now().timestamp()
            if not (float(claims["iat"]) <= now + 60 and now < float(claims["exp"])):
                return None
            UUID(str(claims["jti"]))
            self._clients.known(str(claims["client_id"]))  # a removed client's tokens end
        except (KeyError, TypeError, ValueError, ClientNotFound):
            return None
        return claims

    async def _revoked(self, claims: dict[str, Any]) -> bool:
        """A person's token (it names its app session, `sid`) stands with its session, its
        account and the person's consent to the app; a machine token by its own id."""
        person = "sid" in claims
        standing = await self._revocations.standing(
            AccessClaims(
                account_id=UUID(str(claims["sub" if person else "client_id"])),
                session_id=UUID(str(claims["sid" if person else "jti"])),
                roles=(),
                issued_at=float(claims["iat"]),
                client_id=str(claims["client_id"]) if person else None,
            )
        )
        return standing.revoked

    def revoke(self, token: str, client: ClientView) -> None:
        """Denies the token from now until it expires. Nothing happens for a token that is not
        one of ours (RFC 7009, 2.2: the answer is the same); NotYourToken for another client's."""
        claims = self._valid(token)
        if claims is None:
            return
        if claims["client_id"] != client.client_id:
            raise NotYourToken
        left = float(claims["exp"]) - self._clock.now().timestamp()
        self._revocations.revoke_session(UUID(str(claims["jti"])), timedelta(seconds=left + 60))

    def _count(self, client_id: str, now: datetime) -> None:
        with self._lock:
            tally = self._tallies.get(client_id) or _Tally(0, now, None)
            tally = _Tally(tally.count + 1, tally.since, tally.recorded_at)
            due = tally.recorded_at is None or now - tally.recorded_at >= RECORD_EVERY
            self._tallies[client_id] = _Tally(0, now, now) if due else tally
        if due:
            self._record(client_id, tally.count, tally.since, now)

    @retried_on_conflict
    def _record(self, client_id: str, count: int, since: datetime, now: datetime) -> None:
        client = self._log.find(UUID(client_id), OAuthClient)
        if client is None or client.removed:
            return
        client.tokens_issued(count, since, now)
        self._log.save(client)

    def flush(self) -> None:
        """Records the counts not yet recorded (when the process stops)."""
        now = self._clock.now()
        with self._lock:
            pending = {k: t for k, t in self._tallies.items() if t.count}
            self._tallies.clear()
        for client_id, tally in pending.items():
            self._record(client_id, tally.count, tally.since, now)
