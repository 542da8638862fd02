"""/api/auth: registration, verification, login, refresh, logout."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from application.login import Login
from application.ports import AccessClaims
from application.registration import Registration
from domain.errors import DomainError, RefreshTokenReused
from infrastructure import metrics
from interfaces.http.problems import code_of
from interfaces.http.schemas import (
    Accepted,
    AccountResponse,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    RegisterRequest,
    ResendVerificationRequest,
    TokenResponse,
    VerifyEmailRequest,
)
from interfaces.http.security import BEARER, client_of


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post("/register", sync_to_thread=True, summary="Register an account")
    def register(
        self, data: JSONBody[RegisterRequest], registration: NamedDependency[Registration]
    ) -> AccountResponse:
        account = registration.register(data.email, data.username, data.password)
        metrics.REGISTRATIONS.inc()
        return AccountResponse.of(account)

    @post("/verify-email", sync_to_thread=True, status_code=HTTP_200_OK)
    def verify_email(
        self, data: JSONBody[VerifyEmailRequest], registration: NamedDependency[Registration]
    ) -> AccountResponse:
        account = registration.verify_email(data.token)
        metrics.EMAIL_VERIFICATIONS.inc()
        return AccountResponse.of(account)

    @post("/verify-email/resend", sync_to_thread=True, status_code=HTTP_202_ACCEPTED)
    def resend_verification(
        self, data: JSONBody[ResendVerificationRequest], registration: NamedDependency[Registration]
    ) -> Accepted:
        registration.resend_verification(data.email)
        return Accepted(
            "If the address belongs to an unverified account, a new link is on its way."
        )

    @post("/login", sync_to_thread=True, status_code=HTTP_200_OK)
    def login(
        self,
        data: JSONBody[LoginRequest],
        logins: NamedDependency[Login],
        request: Request[Any, Any, Any],
    ) -> TokenResponse:
        try:
            tokens = logins.log_in(data.login, data.password, client_of(request))
        except DomainError as error:
            metrics.LOGINS.labels(outcome=code_of(error)).inc()
            raise
        metrics.LOGINS.labels(outcome="success").inc()
        metrics.TOKENS.labels(operation="issued").inc()
        return TokenResponse.of(tokens)

    @post("/refresh", sync_to_thread=True, status_code=HTTP_200_OK)
    def refresh(
        self, data: JSONBody[RefreshRequest], logins: NamedDependency[Login]
    ) -> TokenResponse:
        try:
            tokens = logins.refresh(data.refresh_token)
        except RefreshTokenReused:
            metrics.TOKENS.labels(operation="reuse_detected").inc()
            raise
        metrics.TOKENS.labels(operation="refreshed").inc()
        return TokenResponse.of(tokens)

    @post(
        "/logout",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        dependencies={"claims": BEARER},
        security=[{"bearer": []}],
    )
    def logout(
        self,
        logins: NamedDependency[Login],
        claims: NamedDependency[AccessClaims],
        data: JSONBody[LogoutRequest | None] = None,
    ) -> Response[None]:
        body = data or LogoutRequest()
        logins.log_out(claims, body.refresh_token, body.all_sessions)
        metrics.TOKENS.labels(operation="revoked").inc()
        return Response(None, status_code=HTTP_204_NO_CONTENT)
