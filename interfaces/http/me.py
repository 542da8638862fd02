"""/api/users/me: the signed-in account's own profile, sessions and activity."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from application.login import Login
from application.mfa import Enrollment, Mfa
from application.passwords import Passwords
from application.ports import AccessClaims
from application.profile import Profile
from application.queries import MAX_PAGE, Page, ReadSide, SessionSummary
from application.views import AccountView
from domain.errors import FieldError, Invalid
from interfaces.http.openapi import BEARER_ERRORS, BODY, problems
from interfaces.http.schemas import (
    MAX_CURSOR,
    AuditPage,
    ChangePasswordRequest,
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
    ) -> AccountView:
        return profile.show(claims.account_id)

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
                Enrollment | RecoveryCodesResponse,
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
    ) -> Response[Enrollment | RecoveryCodesResponse | None]:
        if data.action == "enable":
            return Response(mfa.enroll(claims))
        if data.action == "confirm":
            if data.code is None:
                raise Invalid(FieldError("code", "required", "is required to confirm"))
            return Response(RecoveryCodesResponse(mfa.confirm(claims, data.code)))
        if data.code is None and data.password is None:
            raise Invalid(FieldError("code", "required", "a code or the password is required"))
        mfa.disable(claims, data.code, data.password)
        return Response(None, status_code=HTTP_204_NO_CONTENT)

    @get("/sessions", sync_to_thread=True, responses=problems(*BEARER_ERRORS))
    def sessions(
        self, claims: NamedDependency[AccessClaims], read_side: NamedDependency[ReadSide]
    ) -> list[SessionSummary]:
        """The account's live sessions, newest first, as the sessions read model has them."""
        return read_side.live_sessions(claims.account_id, claims.session_id)

    @delete(
        "/sessions/{session_id:uuid}",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(400, *BEARER_ERRORS),
    )
    def end_session(
        self,
        claims: NamedDependency[AccessClaims],
        session_id: FromPath[UUID],
        logins: NamedDependency[Login],
    ) -> None:
        logins.end_session(claims, session_id)

    @get(
        "/activity",
        sync_to_thread=True,
        return_dto=AuditPage,
        responses=problems(400, *BEARER_ERRORS),
    )
    def activity(
        self,
        claims: NamedDependency[AccessClaims],
        read_side: NamedDependency[ReadSide],
        cursor: Annotated[int | None, QueryParameter(ge=0, le=MAX_CURSOR)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> Page:
        """The account's own security events, newest first."""
        return read_side.activity(claims.account_id, cursor, limit)

    @put(sync_to_thread=True, responses=problems(*BODY, *BEARER_ERRORS))
    def update(
        self,
        claims: NamedDependency[AccessClaims],
        data: JSONBody[ProfileUpdate],
        profile: NamedDependency[Profile],
    ) -> AccountView:
        return profile.update(claims.account_id, data.display_name)
