"""Request bodies, and the few answers only the edge makes (problems, acknowledgements).

Their bounds are the validation; OpenAPI is derived from them. Every other answer is the use
case's own view (application/views.py, application/read_side/queries.py), served as it is."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar.dto import DataclassDTO, DTOConfig
from msgspec import Meta

from application.factors.reauthentication import Proof
from application.read_side.queries import Page

# No C0/C1 control characters anywhere a person types text. Each pattern ends `$(?!\n)`: Python's `$`
# (msgspec's) also matches before a final newline, which JSON Schema's (ECMA) does not.
_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$(?!\n)"

Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=_PRINTABLE)]
Username = Annotated[str, Meta(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$(?!\n)")]
Login = Annotated[str, Meta(min_length=1, max_length=254, pattern=_PRINTABLE)]
Password = Annotated[str, Meta(min_length=1, max_length=1024, pattern=_PRINTABLE)]
OpaqueToken = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_-]+$(?!\n)")]
CodeVerifier = Annotated[
    str, Meta(min_length=43, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$(?!\n)")
]
DisplayName = Annotated[str, Meta(max_length=100, pattern=_PRINTABLE)]
# A 6-digit TOTP code, or a recovery code like abcd-efgh-jkmn-pqrs-tuvw-xyz2.
OtpCode = Annotated[str, Meta(min_length=6, max_length=32, pattern=r"^[A-Za-z0-9 -]+$(?!\n)")]
Jwt = Annotated[str, Meta(min_length=1, max_length=4096, pattern=r"^[A-Za-z0-9_.-]+$(?!\n)")]
# A position in the event log: both stores keep it in a signed 64-bit integer, so a larger cursor
# is refused here (400) rather than overflowing the database driver (it was a 500).
MAX_CURSOR = 2**63 - 1


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """Unknown fields are refused: a typo must not be silently ignored."""


def given(changes: Request) -> dict[str, Any]:
    """The fields a body of changes names (the others are msgspec.UNSET): only they change."""
    return {
        name: value
        for name, value in msgspec.structs.asdict(changes).items()
        if value is not msgspec.UNSET
    }


class RegisterRequest(Request):
    email: Email
    username: Username
    password: Password


class VerifyEmailRequest(Request):
    token: OpaqueToken


class ResendVerificationRequest(Request):
    email: Email


class LoginRequest(Request):
    login: Login
    password: Password
    otp: OtpCode | None = None  # finishes an MFA login in one step


class MfaLoginRequest(Request):
    mfa_token: Jwt
    code: OtpCode


# A PublicKeyCredential's toJSON() (W3C WebAuthn Level 3): its shape is the library's to judge
# (py_webauthn), and browsers add members over time, so it is taken as an object and read there.
CredentialJson = dict[str, Any]


class Reauthenticated(Request, kw_only=True):
    """A change a stolen access token alone must not make: the password, and a TOTP or
    recovery code when MFA is on; or `passkey`, an assertion over a challenge from
    POST /api/users/me/reauthentication/passkey, in place of both. An account without a
    password may give neither when it signed in within REAUTH_MAX_AGE."""

    password: Password | None = None
    code: OtpCode | None = None
    passkey: CredentialJson | None = None

    def proof(self) -> Proof:
        return Proof(self.password, self.code, self.passkey)


class MfaRequest(Reauthenticated):
    """enable; confirm (code, from the new secret); disable and recovery_codes
    (re-authenticated: the password and a current code, or a passkey)."""

    action: Literal["enable", "confirm", "disable", "recovery_codes"]


class EraseRequest(Reauthenticated):
    """Erasing one's own account is re-authenticated."""


class RefreshRequest(Request):
    refresh_token: OpaqueToken


class LogoutRequest(Request):
    refresh_token: OpaqueToken | None = None
    all_sessions: bool = False


class ForgotPasswordRequest(Request):
    email: Email


class ResetPasswordRequest(Request):
    token: OpaqueToken
    new_password: Password


class ChangePasswordRequest(Request):
    current_password: Password
    new_password: Password
    code: OtpCode | None = None  # a TOTP or recovery code: required when MFA is on


class ProfileUpdate(Request):
    display_name: DisplayName


class RecoveryCodesResponse(msgspec.Struct):
    recovery_codes: list[str]


class Accepted(msgspec.Struct):
    detail: str


class FieldProblem(msgspec.Struct):
    field: str
    rule: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details, with a stable machine-readable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] = msgspec.field(default_factory=list)


class AuditPage(DataclassDTO[Page]):
    """A page of the trail as the API shows it: each entry without the store's bookkeeping
    (aggregate, aggregate_id, version), which the signed export keeps."""

    __schema_name__ = "AuditPage"
    config = DTOConfig(
        exclude={
            "entries.0.aggregate",
            "entries.0.aggregate_id",
            "entries.0.version",
            "entries.0.sealed",
            "entries.0.salts",
        }
    )


class LockRequest(Request):
    until: datetime | None = None  # omitted: until an administrator unlocks


# What a person calls a passkey ("Ada's phone").
PasskeyName = Annotated[str, Meta(min_length=1, max_length=64, pattern=_PRINTABLE)]


class PasskeyRegistrationRequest(Request):
    credential: CredentialJson
    name: PasskeyName | None = None


class PasskeyRenameRequest(Request):
    name: PasskeyName


class PasskeyRemovalRequest(Reauthenticated):
    """Removing a passkey asks what erasing the account asks."""


class PasskeyAdditionRequest(Reauthenticated):
    """Asking for a new passkey's options is re-authenticated: the challenge is what makes a
    registration possible."""


class IdentityUnlinkRequest(Reauthenticated):
    """Unlinking an identity is re-authenticated."""


class OidcLinkRequest(Reauthenticated):
    """Linking another identity is re-authenticated; in a body, so no password is ever in a
    URL (nor in a log or span that records one)."""

    redirect_uri: Annotated[str, Meta(min_length=1, max_length=2048, pattern=_PRINTABLE)]


class AuthorizationUrl(msgspec.Struct):
    authorization_url: str


class PasskeyOptionsRequest(Request):
    mfa_token: Jwt | None = None  # present: the second factor after a password


class PasskeySignInRequest(Request):
    credential: CredentialJson
    mfa_token: Jwt | None = None


class OidcExchangeRequest(Request):
    code: OpaqueToken  # the one-time code a provider sign-in ended with
    # The PKCE-style verifier (RFC 7636, 4.1) whose S256 challenge the app gave to start: the
    # proof that binds the code to the app that started, where the browser's cookie is absent.
    code_verifier: CodeVerifier | None = None


# An OpenID Provider client's registration. The bounds here are the shape; the rules (https,
# loopback, grants that go together) are the domain's (domain/client.py), answered field by field.
ClientName = Annotated[str, Meta(min_length=1, max_length=100, pattern=_PRINTABLE)]
ClientUri = Annotated[str, Meta(min_length=1, max_length=2000, pattern=r"^[\x21-\x7e]+$(?!\n)")]
ClientUris = Annotated[tuple[ClientUri, ...], Meta(max_length=20)]
Grant = Literal["authorization_code", "refresh_token", "client_credentials"]
ScopeToken = Annotated[
    str, Meta(min_length=1, max_length=64, pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$(?!\n)")
]
SigningAlgorithm = Literal["RS256", "ES256", "EdDSA"]
Grants = Annotated[tuple[Grant, ...], Meta(min_length=1, max_length=3)]
Scopes = Annotated[tuple[ScopeToken, ...], Meta(max_length=50)]


class ClientRequest(Request):
    name: ClientName
    redirect_uris: ClientUris = ()
    post_logout_redirect_uris: ClientUris = ()
    grant_types: Grants = ("authorization_code",)
    scopes: Scopes = ("openid", "profile", "email")
    public: bool = False  # a browser or native app, which cannot keep a secret: PKCE instead
    trusted: bool = False  # skips the consent page
    id_token_signed_response_alg: SigningAlgorithm = "RS256"  # noqa: S105 - an algorithm
    resources: ClientUris = ()
    web_origins: ClientUris | None = None  # omitted: the origins of the redirect URIs


class ClientChanges(Request):
    """Only the fields given change; `web_origins: null` goes back to the redirect URIs'
    origins. `public` cannot change (register a new client)."""

    name: ClientName | msgspec.UnsetType = msgspec.UNSET
    redirect_uris: ClientUris | msgspec.UnsetType = msgspec.UNSET
    post_logout_redirect_uris: ClientUris | msgspec.UnsetType = msgspec.UNSET
    grant_types: Grants | msgspec.UnsetType = msgspec.UNSET
    scopes: Scopes | msgspec.UnsetType = msgspec.UNSET
    public: bool | msgspec.UnsetType = msgspec.UNSET
    trusted: bool | msgspec.UnsetType = msgspec.UNSET
    id_token_signed_response_alg: SigningAlgorithm | msgspec.UnsetType = msgspec.UNSET
    resources: ClientUris | msgspec.UnsetType = msgspec.UNSET
    web_origins: ClientUris | msgspec.UnsetType | None = msgspec.UNSET


class ClientSecret(msgspec.Struct):
    """The only answer that holds a client's secret: shown once, never again."""

    client_id: str
    client_secret: str | None  # None for a public client


# A webhook endpoint's registration. The URL's and the events' rules (https, no private address,
# known types, at least one) are the domain's (domain/webhook.py), each with its problem code.
WebhookUrl = Annotated[str, Meta(min_length=1, max_length=2000, pattern=_PRINTABLE)]
EventTypeName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$(?!\n)")]
EventTypeNames = Annotated[tuple[EventTypeName, ...], Meta(max_length=32)]
WebhookDescription = Annotated[str, Meta(max_length=200, pattern=_PRINTABLE)]


class WebhookRequest(Request):
    url: WebhookUrl
    events: EventTypeNames
    description: WebhookDescription = ""
    include_personal: bool = False  # email, username and display name in the bodies


class WebhookChanges(Request):
    """Only the fields given change; `enabled: true` turns a disabled endpoint on again."""

    url: WebhookUrl | msgspec.UnsetType = msgspec.UNSET
    events: EventTypeNames | msgspec.UnsetType = msgspec.UNSET
    description: WebhookDescription | msgspec.UnsetType = msgspec.UNSET
    include_personal: bool | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookSecret(msgspec.Struct):
    """The only answer that holds an endpoint's secret (whsec_…): shown once, never again."""

    id: str
    secret: str


class ReplayRequest(Request):
    """`since`: a log position (0: from the first event), or an instant (RFC 3339, with its
    offset): every matching event since then is sent again, in order."""

    since: Annotated[int, Meta(ge=0, le=MAX_CURSOR)] | Annotated[datetime, Meta(tz=True)]
