"""One error type per rule. The HTTP edge maps each to a problem response; nothing here knows HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class DomainError(Exception):
    """A rule of the domain refused a command."""


@dataclass(frozen=True)
class FieldError:
    field: str
    rule: str
    message: str


class Invalid(DomainError):
    """Input that breaks a rule of shape or policy, naming each offending field."""

    def __init__(self, *errors: FieldError) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class EmailTaken(DomainError):
    """Another account already holds this email address."""


class UsernameTaken(DomainError):
    """Another account already holds this username."""


class InvalidCredentials(DomainError):
    """Unknown login, wrong password or disabled account: deliberately indistinguishable."""


class EmailNotVerified(DomainError):
    """The right password, but the account's email address is not verified yet."""


class InvalidToken(DomainError):
    """An email verification token that is unknown, spent, superseded or expired."""


class InvalidRefreshToken(DomainError):
    """A refresh token that is unknown, expired, or whose session has ended."""


class RefreshTokenReused(DomainError):
    """A refresh token that was already spent: its session is revoked (RFC 9700, 4.14.2)."""


class InvalidAccessToken(DomainError):
    """A missing, malformed, expired, tampered or revoked access token."""


class WrongPassword(DomainError):
    """The current password given to confirm a sensitive change is not the account's."""


class ReauthenticationRequired(DomainError):
    """A change that asks for proof of the person (the password, a passkey, or for an account
    without a password a recent sign-in) came with none, or with a sign-in too old."""


class InvalidMfaCode(DomainError):
    """A TOTP code that is wrong, outside the window or already used, or an unknown or used
    recovery code."""


class MfaCodeAlreadyUsed(InvalidMfaCode):
    """A TOTP code of a time step already spent, or older: the authenticator still shows the
    code just used (to confirm MFA, or to sign in) until its next step, so a person retries it."""


class InvalidMfaToken(DomainError):
    """The short-lived token between the password and the second factor is missing or invalid."""


class MfaAlreadyEnabled(DomainError):
    """MFA is on already; turn it off before enrolling a new authenticator."""


class MfaNotEnabled(DomainError):
    """The command needs MFA to be on (or an enrolment to confirm), and it is not."""


class AccountNotFound(DomainError):
    """No account has this id."""


class SessionNotFound(DomainError):
    """No session of this account has this id."""


class Forbidden(DomainError):
    """The caller's roles do not allow this."""


class AccountLocked(DomainError):
    """Too many consecutive failed logins, or an operator's lock; it lifts at `until`, or when
    an operator unlocks it if `until` is None."""

    def __init__(self, until: datetime | None, at: datetime) -> None:
        super().__init__("locked" if until is None else f"locked until {until.isoformat()}")
        self.until = until
        self.retry_after = None if until is None else (until - at).total_seconds()


class RateLimited(DomainError):
    """Too many requests from one client, or for one account: wait `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.1f}s")
        self.retry_after = retry_after


class InvalidPasskey(DomainError):
    """A passkey sign-in that does not verify: unknown, used or expired challenge, another
    origin or relying party, a bad signature, a credential the account does not hold, or a
    signature counter that went back (a cloned authenticator)."""


class InvalidPasskeyRegistration(DomainError):
    """A new passkey whose attestation does not verify against a registration challenge of
    this account (unknown, used, expired, another origin or relying party, tampered)."""


class PasskeyNotFound(DomainError):
    """The account holds no passkey with this id."""


class UnknownProvider(DomainError):
    """No identity provider of this name is configured."""


class RedirectUriNotAllowed(DomainError):
    """A client redirect URI that is not on the allow-list (OIDC_REDIRECT_URIS)."""


class InvalidSignInState(DomainError):
    """A provider's answer whose `state` is unknown, already used, expired, for another
    provider, or started in another browser."""


class InvalidIdentityResponse(DomainError):
    """A provider's answer that does not verify: the code was refused, or the ID token's
    signature, issuer, audience, lifetime, nonce or algorithm is wrong."""


class ProviderUnavailable(DomainError):
    """The identity provider did not answer in time (or answered with a server error)."""


class InvalidExchangeCode(DomainError):
    """A one-time sign-in code that is unknown, already used or expired."""


class IdentityTaken(DomainError):
    """This external identity is linked to another account."""


class AccountExists(DomainError):
    """The provider's email belongs to an account that this identity is not linked to: never
    linked by itself (sign in to that account first, then link)."""


class IdentityEmailMissing(DomainError):
    """The provider vouched for no email address, and a new account needs one."""


class IdentityNotFound(DomainError):
    """The account has no linked identity with this id."""


class LastWayIn(DomainError):
    """Unlinking this identity would leave the account no way to sign in (no password, no
    passkey, no other identity)."""


class ClientNotFound(DomainError):
    """No client (or a removed one) has this id."""


class InvalidClient(DomainError):
    """A client that is unknown, removed, or whose secret is wrong (or expired after a
    rotation): deliberately indistinguishable, as RFC 6749's invalid_client."""


class ScopeNotAllowed(DomainError):
    """A scope the client asked for that is not registered for it, or that needs a person
    (openid, profile, email, offline_access) in a grant without one: RFC 6749's invalid_scope."""


class ResourceNotAllowed(DomainError):
    """An RFC 8707 resource not registered for the client: invalid_target."""


class NotYourToken(DomainError):
    """A client asked to revoke a token issued to another client."""


class WebhookNotFound(DomainError):
    """No webhook endpoint (or a removed one) has this id."""


class WebhookUrlRefused(Invalid):
    """An endpoint URL that is not absolute, not https (http only on loopback, and only where
    allowed), or carries a user name, password or fragment."""


class PrivateWebhookTarget(Invalid):
    """An endpoint URL at a private, loopback, link-local or metadata address (SSRF)."""


class UnknownEventType(Invalid):
    """An event type that is not in the public catalogue."""


class EmptyEventList(Invalid):
    """An endpoint that asks for no event type at all."""


class ReplayPastEnd(Invalid):
    """A replay from a log position past the last event."""
