"""/api/auth: registration, verification, login, refresh, logout, forgotten passwords."""

from __future__ import annotations

import logging
from collections.abc import Callable

from litestar import Controller, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from application.accounts.registration import Registration
from application.factors.login import Login
from application.factors.passwords import Passwords
from application.factors.throttle import Throttle
from application.ports import Caller
from application.sessions.lifecycle import Sessions
from application.views import AccountView, Client, MfaChallenge, TokenPair
from domain.errors import DomainError
from domain.identity import normalise_email
from infrastructure import metrics
from interfaces.http.openapi import BODY, problems
from interfaces.http.problems import code_of
from interfaces.http.schemas import (
    Accepted,
    ForgotPasswordRequest,
    LoginRequest,
    LogoutRequest,
    MfaLoginRequest,
    RefreshRequest,
    RegisterRequest,
    ResendVerificationRequest,
    ResetPasswordRequest,
    VerifyEmailRequest,
)
from interfaces.http.security import BEARER

log = logging.getLogger(__name__)


def run_quietly(command: Callable[[str], None], argument: str) -> None:
    """Runs after the response: its errors can only be logged (without the argument)."""
    try:
        command(argument)
    except Exception:
        log.exception("background %s failed", command.__name__)


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post(
        "/register",
        sync_to_thread=True,
        summary="Register an account",
        responses=problems(*BODY, 409, 429),
    )
    def register(
        self,
        data: JSONBody[RegisterRequest],
        registration: NamedDependency[Registration],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
    ) -> AccountView:
        throttle.check("register", client.ip)
        return registration.register(data.email, data.username, data.password)

    @post("/verify-email", sync_to_thread=True, status_code=HTTP_200_OK, responses=problems(*BODY))
    def verify_email(
        self, data: JSONBody[VerifyEmailRequest], registration: NamedDependency[Registration]
    ) -> AccountView:
        return registration.verify_email(data.token)

    @post(
        "/verify-email/resend",
        sync_to_thread=True,
        status_code=HTTP_202_ACCEPTED,
        responses=problems(*BODY, 429),
    )
    def resend_verification(
        self,
        data: JSONBody[ResendVerificationRequest],
        registration: NamedDependency[Registration],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
    ) -> Accepted:
        throttle.check("resend_verification", client.ip, data.email)
        registration.resend_verification(data.email)
        return Accepted(
            "If the address belongs to an unverified account, a new link is on its way."
        )

    @post(
        "/forgot-password",
        sync_to_thread=True,
        status_code=HTTP_202_ACCEPTED,
        responses=problems(*BODY, 429),
    )
    def forgot_password(
        self,
        data: JSONBody[ForgotPasswordRequest],
        passwords: NamedDependency[Passwords],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
    ) -> Response[Accepted]:
        normalise_email(data.email)  # a malformed address is a 400 for anyone
        throttle.check("forgot_password", client.ip, data.email)
        # The work happens after the answer is sent, so the answer and its timing are the same
        # whether or not the address has an account.
        return Response(
            Accepted("If the address belongs to an account, a reset link is on its way."),
            status_code=HTTP_202_ACCEPTED,
            background=BackgroundTask(run_quietly, passwords.forget, data.email),
        )

    @post(
        "/reset-password",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, 429),
    )
    def reset_password(
        self,
        data: JSONBody[ResetPasswordRequest],
        passwords: NamedDependency[Passwords],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
    ) -> None:
        throttle.check("reset_password", client.ip)
        passwords.reset(data.token, data.new_password)

    @post(
        "/login",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(*BODY, 401, 403, 423, 429),
    )
    def login(
        self,
        data: JSONBody[LoginRequest],
        logins: NamedDependency[Login],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
    ) -> TokenPair | MfaChallenge:
        try:
            throttle.check("login", client.ip, data.login)
            result = logins.log_in(data.login, data.password, client, otp=data.otp)
        except DomainError as error:
            metrics.LOGINS.labels(outcome=code_of(error)).inc()
            raise
        if isinstance(result, MfaChallenge):
            metrics.LOGINS.labels(outcome="mfa_required").inc()
            return result
        metrics.LOGINS.labels(outcome="success").inc()
        return result

    @post(
        "/login/mfa",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(*BODY, 401, 423, 429),
    )
    def login_mfa(
        self,
        data: JSONBody[MfaLoginRequest],
        logins: NamedDependency[Login],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
    ) -> TokenPair:
        try:
            throttle.check("mfa", client.ip, str(logins.mfa_subject(data.mfa_token)))
            tokens = logins.complete_mfa(data.mfa_token, data.code, client)
        except DomainError as error:
            metrics.LOGINS.labels(outcome=code_of(error)).inc()
            raise
        metrics.LOGINS.labels(outcome="success").inc()
        return tokens

    @post("/refresh", status_code=HTTP_200_OK, responses=problems(*BODY, 401))
    async def refresh(
        self, data: JSONBody[RefreshRequest], sessions: NamedDependency[Sessions]
    ) -> TokenPair:
        """On the event loop: one round trip to the shared store (Redis) when the account is
        unchanged; the event store only once an hour per session."""
        tokens = await sessions.rotate(data.refresh_token)
        # Counted here: the event log records rotations only once an hour per session.
        metrics.TOKENS.labels(operation="refreshed").inc()
        return tokens

    @post(
        "/logout",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        dependencies={"claims": BEARER},
        security=[{"bearer": []}],
        responses=problems(*BODY, 401),
    )
    def logout(
        self,
        sessions: NamedDependency[Sessions],
        claims: NamedDependency[Caller],
        data: JSONBody[LogoutRequest | None] = None,
    ) -> None:
        body = data or LogoutRequest()
        sessions.log_out(claims, body.refresh_token, body.all_sessions)
