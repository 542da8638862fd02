"""Request and response bodies. Their bounds are the validation; OpenAPI is derived from them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from msgspec import Meta

from application.queries import AccountSummary, Page, SessionSummary
from application.trail import TrailEntry
from application.views import AccountView, TokenPair

# No C0/C1 control characters anywhere a person types text.
_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$"

Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=_PRINTABLE)]
Username = Annotated[str, Meta(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
Login = Annotated[str, Meta(min_length=1, max_length=254, pattern=_PRINTABLE)]
Password = Annotated[str, Meta(min_length=1, max_length=1024, pattern=_PRINTABLE)]
OpaqueToken = Annotated[str, Meta(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")]
DisplayName = Annotated[str, Meta(max_length=100, pattern=_PRINTABLE)]
# A 6-digit TOTP code, or a recovery code like abcd-efgh-jkmn-pqrs-tuvw-xyz2.
OtpCode = Annotated[str, Meta(min_length=6, max_length=32, pattern=r"^[A-Za-z0-9 -]+$")]
Jwt = Annotated[str, Meta(min_length=1, max_length=4096, pattern=r"^[A-Za-z0-9_.-]+$")]
# A position in the event log: both stores keep it in a signed 64-bit integer, so a larger cursor
# is refused here (400) rather than overflowing the database driver (it was a 500).
MAX_CURSOR = 2**63 - 1


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """Unknown fields are refused: a typo must not be silently ignored."""


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


class MfaRequest(Request):
    action: Literal["enable", "confirm", "disable"]
    code: OtpCode | None = None
    password: Password | None = None


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


class ProfileUpdate(Request):
    display_name: DisplayName


class AccountResponse(msgspec.Struct):
    id: UUID
    email: str
    username: str
    email_verified: bool
    display_name: str
    created_at: datetime

    @classmethod
    def of(cls, view: AccountView) -> AccountResponse:
        return cls(
            id=view.id,
            email=view.email,
            username=view.username,
            email_verified=view.email_verified,
            display_name=view.display_name,
            created_at=view.created_at,
        )


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str

    @classmethod
    def of(cls, pair: TokenPair) -> TokenResponse:
        return cls(pair.access_token, pair.token_type, pair.expires_in, pair.refresh_token)


class MfaChallengeResponse(msgspec.Struct):
    mfa_token: str
    mfa_required: bool = True


class MfaEnrollmentResponse(msgspec.Struct):
    secret: str
    otpauth_uri: str


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


class SessionResponse(msgspec.Struct):
    id: UUID
    started_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ip: str
    user_agent: str
    current: bool  # the session of the token that asked

    @classmethod
    def of(cls, session: SessionSummary, current: UUID) -> SessionResponse:
        return cls(
            id=session.id,
            started_at=session.started_at,
            last_used_at=session.last_used_at,
            expires_at=session.expires_at,
            ip=session.ip,
            user_agent=session.user_agent,
            current=session.id == current,
        )


class AuditEntry(msgspec.Struct):
    """One security event. `type` is the domain event's class name."""

    position: int
    time: datetime
    type: str
    account_id: UUID | None
    session_id: UUID | None
    ip: str
    user_agent: str
    outcome: str
    details: dict[str, Any]

    @classmethod
    def of(cls, entry: TrailEntry) -> AuditEntry:
        # Entries served here come from the audit log, which always knows their position.
        assert entry.position is not None
        return cls(
            position=entry.position,
            time=entry.time,
            type=entry.type,
            account_id=entry.account_id,
            session_id=entry.session_id,
            ip=entry.ip,
            user_agent=entry.user_agent,
            outcome=entry.outcome,
            details=entry.details,
        )


class AuditPage(msgspec.Struct):
    """A page of entries; pass `next_cursor` as `cursor` for the next (null: no more)."""

    entries: list[AuditEntry]
    next_cursor: int | None

    @classmethod
    def of(cls, page: Page) -> AuditPage:
        return cls([AuditEntry.of(e) for e in page.entries], page.next_cursor)


class AccountSummaryResponse(msgspec.Struct):
    id: UUID
    email: str
    username: str
    display_name: str
    email_verified: bool
    roles: list[str]
    disabled: bool
    locked: bool
    locked_until: datetime | None
    mfa_enabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, summary: AccountSummary) -> AccountSummaryResponse:
        return cls(**{f: getattr(summary, f) for f in cls.__struct_fields__})


class AccountList(msgspec.Struct):
    """Accounts by username; pass `next_after` as `after` for the next page (null: no more)."""

    accounts: list[AccountSummaryResponse]
    next_after: str | None


class LockRequest(Request):
    until: datetime | None = None  # omitted: until an administrator unlocks
