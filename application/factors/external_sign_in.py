"""Signing in with another identity provider (OpenID Connect, or GitHub's OAuth 2.0), and the
account's linked identities.

The flow (RFC 9700 and OIDC Core): `start` makes a `state`, a `nonce` and a PKCE verifier,
keeps them (OneTimeValues) bound to the provider, the client's redirect URI (on the
allow-list), and a secret of the browser that started it (its digest; the secret is in that
browser's cookie). `callback` takes the state once (a replay or another browser's finds
nothing), has the provider's answer verified (IdentityProviders), and decides on the account:
the identity's own when linked, a new one on a first sign-in, never one found by email alone
(the provider's address matching an account is refused: sign in to it, then link). It ends at
the client's redirect URI with a one-time code, good for `exchange` once within a minute, which
answers what a password login answers: the token pair, or an MFA challenge when the account has
MFA and the provider's own multi-factor sign-in is not trusted for it.

The code is bound to whoever started the flow, as the state is (login CSRF, RFC 9700 4.7):
anyone may plant a code of their own sign-in in another's browser or app (a link to the
redirect URI), and the victim would be signed in as the attacker. So `exchange` needs the
browser secret the start gave (the pages, and any client in the browser that started, send
its cookie), or, for an app on another origin that does not hold the cookie, the verifier of
a PKCE-style `code_challenge` (RFC 7636, S256) it sent to start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError

from application.factors.reauthentication import Proof, Reauthentication
from application.persistence.event_log import EventLog, retried_on_conflict
from application.ports import (
    AccessClaims,
    Clock,
    IdentityProviders,
    OneTimeValues,
    ProviderDown,
    ProviderIdentity,
    ProviderRefused,
    SecretBox,
    TokenSigner,
)
from application.sessions.lifecycle import Sessions
from application.tokens import digest, issue_token
from application.tracing import traced
from application.views import Client, MfaChallenge, TokenPair
from domain.account import NO_PASSWORD, Account, EmailClaim, IdentityClaim, UsernameClaim
from domain.errors import (
    AccountExists,
    AccountNotFound,
    DomainError,
    IdentityEmailMissing,
    IdentityTaken,
    Invalid,
    InvalidCredentials,
    InvalidExchangeCode,
    InvalidIdentityResponse,
    InvalidSignInState,
    ProviderUnavailable,
    RedirectUriNotAllowed,
    UnknownProvider,
)
from domain.external_identity import (
    ExternalIdentity,
    multi_factor,
    username_base,
    username_candidates,
)
from domain.identity import normalise_email

log = logging.getLogger(__name__)

_STATE = "oidc-state "  # what each stored value starts with: a state is never a code, nor a
_CODE = "oidc-code "  # passkey challenge (the store is shared), and the reverse
_USERNAME_TRIES = 12


@dataclass(frozen=True)
class ExternalSignInRules:
    redirect_uris: frozenset[str]  # exact matches only (RFC 9700, 4.1.3)
    callback_url: str  # PUBLIC_URL + /api/auth/oidc/{provider}/callback
    state_ttl: timedelta = timedelta(minutes=10)
    code_ttl: timedelta = timedelta(seconds=60)
    require_verified_email: bool = True
    verification_ttl: timedelta = timedelta(hours=24)
    # Redirect URIs that take a refusal of the callback (once the state is proven, so the URI
    # is the one this browser's own start named) as `?error=...`, rather than an error answer
    # from the API: the pages' own /login/oidc, which shows it on the sign-in page.
    refusals_to: frozenset[str] = frozenset()


class RefusedAtCallback(Exception):
    """A refusal of the callback for a redirect URI in `refusals_to`: the browser goes back
    there with the error named, instead of ending on an error answer."""

    def __init__(self, error: DomainError, redirect_uri: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.redirect_uri = redirect_uri


@dataclass(frozen=True)
class Started:
    authorization_url: str
    browser_secret: str  # for the cookie that binds the flow to this browser


@dataclass(frozen=True)
class ProviderView:
    name: str
    label: str


@dataclass(frozen=True)
class IdentityView:
    id: str
    provider: str
    email: str
    linked_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, identity: ExternalIdentity) -> IdentityView:
        return cls(
            identity.id,
            identity.provider,
            identity.email,
            identity.linked_at,
            identity.last_used_at,
        )


def _random() -> str:
    return secrets.token_urlsafe(32)


def _key(value: str) -> bytes:
    """The store's key for a state or code (which travel as base64url text)."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError):
        return b""
    return raw if len(raw) == 32 else b""


def _browser(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def code_challenge(verifier: str) -> str:
    """RFC 7636's S256: BASE64URL(SHA256(verifier)), unpadded."""
    raw = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _same(secret: str | None, kept: str | None, derive: Callable[[str], str]) -> bool:
    if not secret or not kept:
        return False
    return hmac.compare_digest(derive(secret), kept)


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


class ExternalSignIn:
    def __init__(
        self,
        log: EventLog,
        providers: IdentityProviders,
        values: OneTimeValues,
        sessions: Sessions,
        signer: TokenSigner,
        box: SecretBox,
        clock: Clock,
        rules: ExternalSignInRules,
        reauthentication: Reauthentication,
    ) -> None:
        self._log = log
        self._providers = providers
        self._values = values
        self._sessions = sessions
        self._signer = signer
        self._box = box
        self._clock = clock
        self._rules = rules
        self._reauthentication = reauthentication

    def providers(self) -> list[ProviderView]:
        return [ProviderView(n, self._providers.label(n)) for n in self._providers.names()]

    @traced
    def start(
        self,
        provider: str,
        redirect_uri: str,
        link_to: AccessClaims | None,
        browser_secret: str | None = None,
        challenge: str | None = None,
    ) -> Started:
        """`link_to`: the signed-in caller who links this identity to their own account.
        `browser_secret`: the one this browser's cookie holds already, if any (so two sign-ins
        started in one browser both finish); else a new one for the cookie. `challenge`: an
        app's S256 code challenge, whose verifier may stand for the cookie at the exchange."""
        self._known(provider)
        if redirect_uri not in self._rules.redirect_uris:
            raise RedirectUriNotAllowed
        state, nonce, verifier = _random(), _random(), _random()
        browser = browser_secret if browser_secret and len(browser_secret) >= 43 else _random()
        record = {
            "provider": provider,
            "nonce": nonce,
            "verifier": verifier,
            "redirect_uri": redirect_uri,
            "browser": _browser(browser),
            "challenge": challenge,
            "link": None if link_to is None else str(link_to.account_id),
        }
        try:
            url = self._providers.authorization_url(
                provider, self._callback(provider), state, nonce, verifier
            )
        except ProviderDown:
            raise ProviderUnavailable from None
        self._values.put(
            _key(state), _STATE + json.dumps(record), self._clock.now() + self._rules.state_ttl
        )
        return Started(url, browser)

    @traced
    @retried_on_conflict
    def link(
        self,
        claims: AccessClaims,
        proof: Proof,
        provider: str,
        redirect_uri: str,
        browser_secret: str | None = None,
    ) -> Started:
        """Starts linking another identity to the caller's own account: re-authenticated,
        since a linked identity is a way in for good (a stolen token must not add one)."""
        self._known(provider)  # a typo costs no guess
        if redirect_uri not in self._rules.redirect_uris:
            raise RedirectUriNotAllowed
        account = self._account(claims.account_id)
        self._reauthentication.prove(account, claims, proof, command="link_identity")
        if account.pending_events:
            self._log.save(account)  # the code it spent, or the passkey it was proven with
        return self.start(provider, redirect_uri, claims, browser_secret)

    @traced
    def callback(
        self, provider: str, code: str | None, state: str, browser_secret: str | None
    ) -> str:
        """Where the browser goes next: the client's redirect URI with a one-time `code` (a
        sign-in) or `linked=<provider>` (a link). No code (the person declined, or the
        provider answered an error): the state is spent all the same."""
        record = self._take_state(provider, state, browser_secret)
        try:
            return self._finish(provider, code, record)
        except DomainError as error:
            if record["redirect_uri"] in self._rules.refusals_to:
                raise RefusedAtCallback(error, record["redirect_uri"]) from error
            raise

    def _finish(self, provider: str, code: str | None, record: dict[str, Any]) -> str:
        if not code:
            raise InvalidIdentityResponse
        try:
            identity = self._providers.identify(
                provider, code, self._callback(provider), record["nonce"], record["verifier"]
            )
        except ProviderRefused as error:
            log.warning("a sign-in with %s did not verify: %s", provider, error)
            raise InvalidIdentityResponse from None
        except ProviderDown as error:
            log.error("identity provider %s unavailable: %s", provider, error)
            raise ProviderUnavailable from None
        if record["link"] is not None:
            self._link(UUID(record["link"]), provider, identity)
            return with_query(record["redirect_uri"], linked=provider)
        account, identity_id = self._account_for(provider, identity)
        now = self._clock.now()
        account.ensure_not_locked(now)
        if account.disabled:
            raise InvalidCredentials
        account.ensure_may_log_in(self._rules.require_verified_email)
        trusted = self._providers.trusts_mfa(provider) and multi_factor(identity.amr, identity.acr)
        code_value = _random()
        self._values.put(
            _key(code_value),
            _CODE
            + json.dumps(
                {
                    "account": str(account.id),
                    "identity": identity_id,
                    "mfa_done": trusted,
                    # Whoever started the flow, carried from the state to the code.
                    "browser": record["browser"],
                    "challenge": record.get("challenge"),
                }
            ),
            now + self._rules.code_ttl,
        )
        return with_query(record["redirect_uri"], code=code_value)

    @traced
    def exchange(
        self,
        code: str,
        client: Client,
        browser_secret: str | None,
        verifier: str | None = None,
    ) -> TokenPair | MfaChallenge:
        """The code is spent by any attempt, a refused one too: a code that reached another
        browser is no longer good for anyone."""
        found = self._values.take(_key(code), self._clock.now()) if _key(code) else None
        if found is None or not found.startswith(_CODE):
            raise InvalidExchangeCode
        record = json.loads(found.removeprefix(_CODE))
        if not (
            _same(browser_secret, record.get("browser"), _browser)
            or _same(verifier, record.get("challenge"), code_challenge)
        ):
            raise InvalidExchangeCode
        account = self._log.find(UUID(record["account"]), Account)
        if account is None:
            raise InvalidExchangeCode
        if account.mfa_enabled and not record["mfa_done"]:
            return MfaChallenge(self._signer.issue_mfa_token(account.id, self._clock.now()))
        return self._start_session(account.id, record["identity"], client)

    @retried_on_conflict
    def _start_session(self, account_id: UUID, identity_id: str, client: Client) -> TokenPair:
        """A sign-in verified by another identity provider signs in as a password does (the
        same session, trail, mail and lockout reset), its use recorded in the same save."""
        account = self._log.find(account_id, Account)
        if account is None:
            raise InvalidCredentials
        now = self._clock.now()
        account.ensure_not_locked(now)
        if account.disabled:
            raise InvalidCredentials
        account.use_identity(identity_id, now)
        return self._sessions.start(account, client, account.password_generation)

    # The caller's identities

    def identities(self, claims: AccessClaims) -> list[IdentityView]:
        return [IdentityView.of(i) for i in self._account(claims.account_id).identity_list()]

    @traced
    @retried_on_conflict
    def unlink(self, claims: AccessClaims, identity_id: str, proof: Proof) -> None:
        account = self._account(claims.account_id)
        account.identity(identity_id)  # an unknown id is a 404 before any password is tried
        self._reauthentication.prove(account, claims, proof, command="unlink_identity")
        identity = account.unlink_identity(identity_id, self._clock.now())
        released = self._log.claims_held(
            IdentityClaim, "identity", f"{identity.provider}:{identity.subject}", account.id
        )
        for claim in released:
            claim.release(self._clock.now())
        self._log.save(account, *released)

    # The flow's steps

    def _take_state(self, provider: str, state: str, browser_secret: str | None) -> dict[str, Any]:
        """The state is spent whatever follows: a second use finds nothing."""
        key = _key(state)
        found = self._values.take(key, self._clock.now()) if key else None
        if found is None or not found.startswith(_STATE):
            raise InvalidSignInState
        record: dict[str, Any] = json.loads(found.removeprefix(_STATE))
        if (
            record["provider"] != provider
            or browser_secret is None
            or not hmac.compare_digest(_browser(browser_secret), record["browser"])
        ):
            raise InvalidSignInState
        return record

    @retried_on_conflict
    def _link(self, account_id: UUID, provider: str, identity: ProviderIdentity) -> None:
        account = self._account(account_id)
        claim = self._log.identity_claim(provider, identity.subject)
        if claim is not None and claim.held:
            if claim.account_id == account.id:
                return  # linked already
            raise IdentityTaken
        now = self._clock.now()
        account.link_identity(str(uuid4()), provider, identity.subject, identity.email or "", now)
        self._log.save(account, *self._claimed(IdentityClaim, claim, provider, identity, account))

    def _account_for(self, provider: str, identity: ProviderIdentity) -> tuple[Account, str]:
        """The linked account, or a new one on a first sign-in."""
        claim = self._log.identity_claim(provider, identity.subject)
        if claim is not None and claim.account_id is not None:
            account = self._log.find(claim.account_id, Account)
            linked = None if account is None else account.identity_for(provider, identity.subject)
            if account is None or linked is None:
                raise InvalidCredentials  # a claim without its account: never a sign-in
            return account, linked.id
        return self._new_account(provider, identity, claim)

    def _new_account(
        self, provider: str, identity: ProviderIdentity, claim: IdentityClaim | None
    ) -> tuple[Account, str]:
        if identity.email is None:
            raise IdentityEmailMissing
        try:
            email = normalise_email(identity.email)
        except Invalid:
            raise IdentityEmailMissing from None
        email_claim = self._log.email_claim(email)
        if email_claim is not None and email_claim.held:
            # The classic takeover: whoever controls an address at a provider is not thereby
            # the account's owner. Never linked by itself.
            raise AccountExists
        now = self._clock.now()
        for username in self._usernames(identity):
            account = Account(
                email=email, username=username, password_hash=NO_PASSWORD, timestamp=now
            )
            if identity.email_verified:
                account.confirm_email_by_provider(provider, now)
            else:
                self._request_verification(account)
            identity_id = str(uuid4())
            account.link_identity(identity_id, provider, identity.subject, email, now)
            try:
                self._log.save(
                    account,
                    *self._claimed(EmailClaim, email_claim, "email", email, account),
                    *self._claimed(
                        UsernameClaim,
                        self._log.username_claim(username),
                        "username",
                        username,
                        account,
                    ),
                    *self._claimed(IdentityClaim, claim, provider, identity, account),
                )
            except IntegrityError:
                # A race: for the identity or the email (decided again from the top), or for
                # the username (the next candidate).
                raced = self._log.identity_claim(provider, identity.subject)
                if raced is not None and raced.held:
                    return self._account_for(provider, identity)
                taken = self._log.email_claim(email)
                if taken is not None and taken.held:
                    raise AccountExists from None
                continue
            return account, identity_id
        raise IdentityTaken  # no free username after every try: refuse rather than loop

    def _usernames(self, identity: ProviderIdentity) -> Iterator[str]:
        base = username_base(identity.hints)
        suffixes = (
            str(n) if n < 5 else secrets.token_hex(3) for n in range(2, 2 + _USERNAME_TRIES)
        )
        for candidate in username_candidates(base, suffixes):
            claim = self._log.username_claim(candidate)
            if claim is None or not claim.held:
                yield candidate

    def _claimed(self, kind: Any, claim: Any, what: str, value: Any, account: Account) -> list[Any]:
        """The value's first claim, or the next generation after a released one, under each
        live version of the fingerprint key (as registration does)."""
        if claim is not None and claim.held:
            raise IntegrityError("the claim is held")
        if kind is IdentityClaim:
            what, value = "identity", f"{what}:{value.subject}"
        return self._log.claims_made(kind, what, value, account.id, self._clock.now())

    def _request_verification(self, account: Account) -> None:
        token = issue_token(account.id)
        account.request_email_verification(
            token_hash=digest(token),
            sealed_token=self._box.seal(token),
            at=self._clock.now(),
            ttl=self._rules.verification_ttl,
        )

    def _callback(self, provider: str) -> str:
        return self._rules.callback_url.format(provider=provider)

    def _known(self, provider: str) -> None:
        if provider not in self._providers.names():
            raise UnknownProvider

    def _account(self, account_id: UUID) -> Account:
        account = self._log.find(account_id, Account)
        if account is None:
            raise AccountNotFound
        return account
