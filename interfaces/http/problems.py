"""Where HTTP meets the domain: every error becomes an RFC 9457 problem with a stable `code`."""

from __future__ import annotations

import logging
import math
import re
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from application.ports import Overloaded
from domain.errors import (
    AccountExists,
    AccountLocked,
    AccountNotFound,
    ClientNotFound,
    DomainError,
    EmailNotVerified,
    EmailTaken,
    EmptyEventList,
    Forbidden,
    IdentityEmailMissing,
    IdentityNotFound,
    IdentityTaken,
    Invalid,
    InvalidAccessToken,
    InvalidClient,
    InvalidCredentials,
    InvalidExchangeCode,
    InvalidIdentityResponse,
    InvalidMfaCode,
    InvalidMfaToken,
    InvalidPasskey,
    InvalidPasskeyRegistration,
    InvalidRefreshToken,
    InvalidSignInState,
    InvalidToken,
    LastWayIn,
    MfaAlreadyEnabled,
    MfaCodeAlreadyUsed,
    MfaNotEnabled,
    PasskeyNotFound,
    PrivateWebhookTarget,
    ProviderUnavailable,
    RateLimited,
    ReauthenticationRequired,
    RedirectUriNotAllowed,
    RefreshTokenReused,
    ReplayPastEnd,
    SessionNotFound,
    UnknownEventType,
    UnknownProvider,
    UsernameTaken,
    WebhookNotFound,
    WebhookUrlRefused,
    WrongPassword,
)
from interfaces.http.schemas import FieldProblem, Problem
from interfaces.logs import current_request

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# One row per domain rule: status, code, title. The detail comes from the row too, so no message
# composed from internals (or a secret) can leak into a response.
DOMAIN_PROBLEMS: dict[type[DomainError], tuple[int, str, str]] = {
    Invalid: (400, "validation_failed", "The request is invalid."),
    EmailTaken: (409, "email_taken", "This email address is already registered."),
    UsernameTaken: (409, "username_taken", "This username is already taken."),
    InvalidCredentials: (401, "invalid_credentials", "The login or password is incorrect."),
    EmailNotVerified: (403, "email_not_verified", "The email address is not verified yet."),
    InvalidToken: (400, "invalid_token", "The token is invalid, used or expired."),
    InvalidRefreshToken: (401, "invalid_refresh_token", "The refresh token is not valid."),
    RefreshTokenReused: (
        401,
        "refresh_token_reused",
        "This refresh token was already used; the session has been ended.",
    ),
    InvalidAccessToken: (401, "invalid_access_token", "A valid access token is required."),
    AccountNotFound: (404, "account_not_found", "The account does not exist."),
    ClientNotFound: (404, "client_not_found", "No client has this id."),
    InvalidClient: (401, "invalid_client", "Client authentication failed."),
    SessionNotFound: (404, "session_not_found", "You have no session with this id."),
    Forbidden: (403, "forbidden", "Your roles do not allow this."),
    WrongPassword: (403, "invalid_current_password", "The current password is incorrect."),
    ReauthenticationRequired: (
        401,
        "reauthentication_required",
        "Confirm it is you: give your password (and a code when two-step sign-in is on), or "
        "use a passkey; without a password, sign in again.",
    ),
    RateLimited: (429, "rate_limited", "Too many requests; wait before trying again."),
    InvalidMfaCode: (401, "invalid_mfa_code", "The code is wrong, expired or already used."),
    # The same code as any refused one (clients branch on it), with the hint a person needs:
    # the authenticator goes on showing the code just used until its next step.
    MfaCodeAlreadyUsed: (
        401,
        "invalid_mfa_code",
        "This code was already used; wait for the next one from your app.",
    ),
    InvalidMfaToken: (
        401,
        "invalid_mfa_token",
        "The MFA token is invalid or expired; log in again.",
    ),
    MfaAlreadyEnabled: (409, "mfa_already_enabled", "MFA is already on; turn it off first."),
    MfaNotEnabled: (409, "mfa_not_enabled", "MFA is not on, or there is no enrolment to confirm."),
    InvalidPasskey: (
        401,
        "invalid_passkey",
        "The passkey could not be verified; ask for new options and try again.",
    ),
    InvalidPasskeyRegistration: (
        400,
        "invalid_passkey_registration",
        "The new passkey could not be verified; ask for new options and try again.",
    ),
    PasskeyNotFound: (404, "passkey_not_found", "You have no passkey with this id."),
    UnknownProvider: (404, "unknown_provider", "No identity provider of this name is set up."),
    RedirectUriNotAllowed: (
        400,
        "redirect_uri_not_allowed",
        "The redirect URI is not one this service may send a sign-in to.",
    ),
    InvalidSignInState: (
        400,
        "invalid_state",
        "This sign-in was not started in this browser, was already used, or has expired; "
        "start again.",
    ),
    InvalidIdentityResponse: (
        401,
        "invalid_identity_response",
        "The identity provider's answer could not be verified; start again.",
    ),
    ProviderUnavailable: (
        502,
        "provider_unavailable",
        "The identity provider did not answer; try again shortly.",
    ),
    InvalidExchangeCode: (
        400,
        "invalid_sign_in_code",
        "The sign-in code is unknown, already used or expired; sign in again.",
    ),
    IdentityTaken: (409, "identity_taken", "This identity is linked to another account."),
    AccountExists: (
        409,
        "account_exists",
        "An account already uses this email address. Sign in to it, then link this provider "
        "from your account.",
    ),
    IdentityEmailMissing: (
        400,
        "identity_email_missing",
        "The identity provider shared no email address; an account needs one.",
    ),
    IdentityNotFound: (404, "identity_not_found", "You have no linked identity with this id."),
    LastWayIn: (
        409,
        "last_sign_in_method",
        "This is your only way to sign in; set a password or add a passkey first.",
    ),
    WebhookNotFound: (404, "webhook_not_found", "No webhook endpoint has this id."),
    WebhookUrlRefused: (
        400,
        "webhook_url_invalid",
        "The endpoint URL must be absolute https, without user name, password or fragment.",
    ),
    PrivateWebhookTarget: (
        400,
        "webhook_target_private",
        "The endpoint URL is at a private, loopback, link-local or metadata address.",
    ),
    UnknownEventType: (400, "unknown_event_type", "An event type is not in the catalogue."),
    EmptyEventList: (400, "empty_event_list", "An endpoint needs at least one event type."),
    ReplayPastEnd: (400, "replay_past_end", "The replay would start after the last event."),
    AccountLocked: (
        423,
        "account_locked",
        "The account is locked: after too many failed logins, until the time in Retry-After "
        "or a password reset; by an administrator, until they unlock it.",
    ),
}

# Litestar's own refusals, for requests that never reach a use case.
HTTP_CODES: dict[int, str] = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def problem(
    status: int,
    code: str,
    detail: str,
    errors: list[FieldProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Problem]:
    request = current_request.get()
    if request is not None:
        request.outcome = code  # the access log's outcome: the problem's stable code
    return Response(
        Problem(
            type=f"urn:tessera:problem:{code}",
            title=HTTPStatus(status).phrase,
            status=status,
            detail=detail,
            code=code,
            errors=errors or [],
        ),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _row(error: DomainError) -> tuple[int, str, str] | None:
    for kind in type(error).__mro__:
        if kind in DOMAIN_PROBLEMS:
            return DOMAIN_PROBLEMS[kind]
    return None


def code_of(error: DomainError) -> str:
    row = _row(error)
    return row[1] if row else "internal_error"


def domain_problem(_: Request[Any, Any, Any], error: DomainError) -> Response[Problem]:
    row = _row(error)
    if row is None:
        log.error("unmapped domain error %s", type(error).__name__)
        return problem(500, "internal_error", "An unexpected error occurred.")
    status, code, detail = row
    errors = (
        [FieldProblem(e.field, e.rule, e.message) for e in error.errors]
        if isinstance(error, Invalid)
        else None
    )
    return problem(status, code, detail, errors, _headers(error))


def _headers(error: DomainError) -> dict[str, str] | None:
    if isinstance(error, InvalidAccessToken):
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    if isinstance(error, AccountLocked | RateLimited) and error.retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(error.retry_after)))}
    return None


_FIELD_PATH = re.compile(r"at `\$\.?([^`]*)`")


def validation_problem(_: Request[Any, Any, Any], error: ValidationException) -> Response[Problem]:
    """msgspec's refusals: malformed JSON, bad UTF-8, wrong types, unknown or overlong fields."""
    errors: list[FieldProblem] = []
    for item in error.extra if isinstance(error.extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "is invalid"))
        field = str(item.get("key") or "")
        match = _FIELD_PATH.search(message)
        if match:
            field = field or match.group(1)
            message = message[: match.start()].rstrip(" -")
        errors.append(FieldProblem(field=field or "body", rule="schema", message=message))
    return problem(400, "validation_failed", "The request is invalid.", errors)


def http_problem(_: Request[Any, Any, Any], error: HTTPException) -> Response[Problem]:
    status = error.status_code
    code = HTTP_CODES.get(status, "http_error")
    if status == 400:
        # Litestar's own 400s are bodies msgspec could not decode: bad JSON or bad UTF-8.
        return problem(400, "malformed_request", "The request body is not valid UTF-8 JSON.")
    detail = error.detail if status < 500 else "An unexpected error occurred."
    return problem(status, code, str(detail), headers=error.headers)


def undecodable_problem(_: Request[Any, Any, Any], __: UnicodeDecodeError) -> Response[Problem]:
    """msgspec decodes string contents lazily: bad UTF-8 inside a JSON string surfaces here."""
    return problem(400, "malformed_request", "The request body is not valid UTF-8 JSON.")


def overloaded_problem(_: Request[Any, Any, Any], __: Overloaded) -> Response[Problem]:
    return problem(
        503,
        "overloaded",
        "The service is at capacity for password checks; try again in a moment.",
        headers={"Retry-After": "1"},
    )


def unavailable_problem(_: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    """A backing service did not answer (Unavailable, or a store's own connection error)."""
    log.error("a backing service is unavailable: %s", error)
    return problem(
        503,
        "unavailable",
        "A service this request depends on is unavailable; try again shortly.",
        headers={"Retry-After": "1"},
    )


def unexpected_problem(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return problem(500, "internal_error", "An unexpected error occurred.")
