"""Authorization codes (RFC 6749, 4.1): random, single use, short-lived, bound to what the
person's browser asked for and proved. Kept in the store of one-time challenges (passkeys, sign
in with other providers), so a code is taken atomically on either deployment (SQL's DELETE ...
RETURNING, Redis's GETDEL), and stored only as a digest.

A code is claimed as spent, naming the app session it is about to start, before it is taken:
a second use, even one racing the first, finds the claim and ends that session (4.1.2: "SHOULD
revoke all tokens previously issued based on that code"); see Sessions.end_spent_code_session
for a second use that comes before the session is saved."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import timedelta
from uuid import UUID

from application.ports import Clock, OneTimeValues
from domain.errors import AuthorizationCodeReused, InvalidAuthorizationCode

LIFETIME = timedelta(seconds=60)
# How long a spent code is remembered: longer than any code lives, so that a code copied from
# a log or a history and tried after its first use is always caught.
REMEMBERED = timedelta(minutes=10)
_CODE_BYTES = 32
_CODE = "oauth2_code"
_SPENT = "oauth2_spent"


@dataclass(frozen=True)
class CodeGrant:
    """What a code stands for: the request it answers and the sign-in behind it."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    account_id: UUID
    browser_session_id: UUID  # the browser session that allowed it: the tokens' `sid`
    auth_time: float  # when the person last proved who they are (OIDC Core's auth_time)
    amr: tuple[str, ...] = ()  # how (RFC 8176: pwd, otp, mfa, hwk, ...)
    acr: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None  # PKCE (RFC 7636), S256 only
    resource: str | None = None  # RFC 8707: the API its access token is for

    def encoded(self) -> str:
        state = asdict(self)
        state["account_id"] = str(self.account_id)
        state["browser_session_id"] = str(self.browser_session_id)
        return json.dumps(state, separators=(",", ":"))

    @classmethod
    def decoded(cls, text: str) -> CodeGrant:
        state = json.loads(text)
        state["account_id"] = UUID(state["account_id"])
        state["browser_session_id"] = UUID(state["browser_session_id"])
        state["scopes"] = tuple(state["scopes"])
        state["amr"] = tuple(state["amr"])
        return cls(**state)


class AuthorizationCodes:
    def __init__(self, store: OneTimeValues, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def issue(self, grant: CodeGrant) -> str:
        code = secrets.token_urlsafe(_CODE_BYTES)
        self._store.put(
            _key(_CODE, code), f"{_CODE} {grant.encoded()}", self._clock.now() + LIFETIME
        )
        return code

    def take(self, code: str, client_id: str, session_id: UUID) -> CodeGrant:
        """What the code stands for, taken so that no one takes it again, and remembered as
        spent by `session_id` (the app session the caller is about to start with it, named
        before it starts, so a second use racing the first still finds what to end).

        InvalidAuthorizationCode when unknown, expired or another client's (taken all the
        same: a code shown to the wrong client is burnt); AuthorizationCodeReused, naming the
        first use's session, when it was spent already."""
        now = self._clock.now()
        if not 20 <= len(code) <= 100:
            raise InvalidAuthorizationCode
        # The code is claimed as spent before it is taken: a use that came between the take
        # and a later mark would find neither, and end nothing. A use that finds the claim
        # takes it instead (the first use's session, to end).
        claimed, taken = self._store.claim_then_take(
            _key(_SPENT, code), f"{_SPENT} {session_id}", now + REMEMBERED, _key(_CODE, code), now
        )
        if not claimed:
            if taken is not None and taken.startswith(f"{_SPENT} "):
                raise AuthorizationCodeReused(UUID(taken.removeprefix(f"{_SPENT} ")))
            raise InvalidAuthorizationCode
        if taken is None or not taken.startswith(f"{_CODE} "):
            raise InvalidAuthorizationCode  # unknown or expired: its claim names no session
        grant = CodeGrant.decoded(taken.removeprefix(f"{_CODE} "))
        if grant.client_id != client_id:
            raise InvalidAuthorizationCode
        return grant


def _key(kind: str, code: str) -> bytes:
    """The store's key: a digest, so the store never holds a usable code."""
    return hashlib.sha256(f"{kind}|{code}".encode()).digest()
