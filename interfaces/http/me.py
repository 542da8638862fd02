"""/api/users/me: the signed-in account's own profile."""

from __future__ import annotations

from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from application.mfa import Mfa
from application.passwords import Passwords
from application.ports import AccessClaims
from application.profile import Profile
from domain.errors import FieldError, Invalid
from interfaces.http.openapi import BEARER_ERRORS, BODY, problems
from interfaces.http.schemas import (
    AccountResponse,
    ChangePasswordRequest,
    MfaEnrollmentResponse,
    MfaRequest,
    ProfileUpdate,
    RecoveryCodesResponse,
)
from interfaces.http.security import BEARER


class MeController(Controller):
    path = "/api/users/me"
    tags = ["me"]
    dependencies = {"claims": BEARER}
    security = [{"bearer": []}]

    @get(sync_to_thread=True, responses=problems(*BEARER_ERRORS))
    def show(
        self, claims: NamedDependency[AccessClaims], profile: NamedDependency[Profile]
    ) -> AccountResponse:
        return AccountResponse.of(profile.show(claims.account_id))

    @put(
        "/password",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, *BEARER_ERRORS, 403),
    )
    def change_password(
        self,
        claims: NamedDependency[AccessClaims],
        data: JSONBody[ChangePasswordRequest],
        passwords: NamedDependency[Passwords],
    ) -> None:
        passwords.change(claims, data.current_password, data.new_password)

    @post(
        "/mfa",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses={
            # enable answers the secret, confirm the recovery codes, disable nothing.
            200: ResponseSpec(
                MfaEnrollmentResponse | RecoveryCodesResponse,
                description="enable: the new secret; confirm: the ten recovery codes",
                generate_examples=False,
            ),
            204: ResponseSpec(None, description="disable: MFA is off"),
            **problems(*BODY, *BEARER_ERRORS, 403, 409),
        },
    )
    def mfa(
        self,
        claims: NamedDependency[AccessClaims],
        data: JSONBody[MfaRequest],
        mfa: NamedDependency[Mfa],
    ) -> Response[MfaEnrollmentResponse | RecoveryCodesResponse | None]:
        if data.action == "enable":
            enrollment = mfa.enroll(claims)
            return Response(MfaEnrollmentResponse(enrollment.secret, enrollment.otpauth_uri))
        if data.action == "confirm":
            if data.code is None:
                raise Invalid(FieldError("code", "required", "is required to confirm"))
            return Response(RecoveryCodesResponse(mfa.confirm(claims, data.code)))
        if data.code is None and data.password is None:
            raise Invalid(FieldError("code", "required", "a code or the password is required"))
        mfa.disable(claims, data.code, data.password)
        return Response(None, status_code=HTTP_204_NO_CONTENT)

    @put(sync_to_thread=True, responses=problems(*BODY, *BEARER_ERRORS))
    def update(
        self,
        claims: NamedDependency[AccessClaims],
        data: JSONBody[ProfileUpdate],
        profile: NamedDependency[Profile],
    ) -> AccountResponse:
        return AccountResponse.of(profile.update(claims.account_id, data.display_name))
