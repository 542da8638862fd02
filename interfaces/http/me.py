"""/api/users/me: the signed-in account's own profile, sessions and activity."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, MediaType, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from application.accounts.profile import Profile
from application.factors.mfa import Enrollment, Mfa
from application.factors.passwords import Passwords
from application.ports import Caller
from application.privacy.erasure import Erasure
from application.privacy.personal_data import PersonalDataExport
from application.read_side.queries import MAX_PAGE, Page, ReadSide, SessionSummary
from application.sessions.lifecycle import Sessions
from application.views import AccountView
from domain.errors import FieldError, Invalid
from interfaces.http.openapi import BEARER_ERRORS, BODY, problems
from interfaces.http.own_reads import READ_BEHIND_HEADERS, own_read
from interfaces.http.schemas import (
    MAX_CURSOR,
    AuditPage,
    ChangePasswordRequest,
    EraseRequest,
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

    @get(responses=problems(*BEARER_ERRORS))
    async def show(
        self, claims: NamedDependency[Caller], request: Request[Any, Any, Any]
    ) -> AccountView:
        # The hottest read: Profile comes from the app's state, not as a second dependency,
        # because two dependencies at one depth cost Litestar a task group per request (10% of
        # this request's CPU in a profile), and the token check is all this one needs resolved.
        profile: Profile = request.app.state.profile
        return await profile.show(claims)

    @put(
        "/password",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, *BEARER_ERRORS, 403, 423, 429),
    )
    def change_password(
        self,
        claims: NamedDependency[Caller],
        data: JSONBody[ChangePasswordRequest],
        passwords: NamedDependency[Passwords],
    ) -> None:
        passwords.change(claims, data.current_password, data.new_password, data.code)

    @post(
        "/mfa",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses={
            # enable answers the secret, confirm and recovery_codes the codes, disable nothing.
            200: ResponseSpec(
                Enrollment | RecoveryCodesResponse,
                description="enable: the new secret; confirm, recovery_codes: ten recovery codes",
                generate_examples=False,
            ),
            204: ResponseSpec(None, description="disable: MFA is off"),
            **problems(*BODY, *BEARER_ERRORS, 403, 409, 423, 429),
        },
    )
    def mfa(
        self,
        claims: NamedDependency[Caller],
        data: JSONBody[MfaRequest],
        mfa: NamedDependency[Mfa],
    ) -> Response[Enrollment | RecoveryCodesResponse | None]:
        if data.action == "enable":
            return Response(mfa.enroll(claims))
        if data.action == "confirm":
            if data.code is None:
                raise Invalid(FieldError("code", "required", "is required to confirm"))
            return Response(RecoveryCodesResponse(mfa.confirm(claims, data.code)))
        if data.action == "recovery_codes":
            return Response(RecoveryCodesResponse(mfa.renew_recovery_codes(claims, data.proof())))
        mfa.disable(claims, data.proof())
        return Response(None, status_code=HTTP_204_NO_CONTENT)

    @get(
        "/sessions",
        sync_to_thread=True,
        responses=problems(*BEARER_ERRORS),
        response_headers=READ_BEHIND_HEADERS,
    )
    def sessions(
        self, claims: NamedDependency[Caller], read_side: NamedDependency[ReadSide]
    ) -> Response[list[SessionSummary]]:
        """The account's live sessions, newest first, as the sessions read model has them."""
        behind = read_side.caught_up("sessions", claims.written)
        return own_read(read_side.live_sessions(claims.account_id, claims.session_id), behind)

    @delete(
        "/sessions/{session_id:uuid}",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(400, *BEARER_ERRORS),
    )
    def end_session(
        self,
        claims: NamedDependency[Caller],
        session_id: FromPath[UUID],
        sessions: NamedDependency[Sessions],
    ) -> None:
        sessions.end(claims, session_id)

    @get(
        "/activity",
        sync_to_thread=True,
        return_dto=AuditPage,
        media_type=MediaType.JSON,  # lost from OpenAPI when a DTO meets Response[...]
        responses=problems(400, *BEARER_ERRORS),
        response_headers=READ_BEHIND_HEADERS,
    )
    def activity(
        self,
        claims: NamedDependency[Caller],
        read_side: NamedDependency[ReadSide],
        cursor: Annotated[int | None, QueryParameter(ge=0, le=MAX_CURSOR)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 50,
    ) -> Response[Page]:
        """The account's own security events, newest first."""
        behind = read_side.caught_up("audit_log", claims.written)
        return own_read(read_side.activity(claims.account_id, cursor, limit), behind)

    @delete(
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, *BEARER_ERRORS, 403, 404, 423, 429),
    )
    def erase(
        self,
        claims: NamedDependency[Caller],
        data: JSONBody[EraseRequest],
        erasure: NamedDependency[Erasure],
    ) -> None:
        """Forgets the person (GDPR Art. 17): every session ends, the data key is destroyed,
        the email and username are free again. The trail keeps what happened, not who."""
        erasure.erase_own(claims, data.proof())

    @get(
        "/export",
        sync_to_thread=True,
        media_type=MediaType.JSON,
        responses=problems(400, *BEARER_ERRORS, 404),
    )
    def export(
        self,
        claims: NamedDependency[Caller],
        read_side: NamedDependency[ReadSide],
        personal_data: NamedDependency[PersonalDataExport],
    ) -> Stream:
        """Everything held about the caller (GDPR Art. 15 and 20), as one JSON document,
        streamed: profile, sessions, every event with its personal values, mails sent."""
        read_side.caught_up("sessions", claims.written)
        document = personal_data.document(claims.account_id)
        return Stream(
            document,
            media_type=MediaType.JSON,
            headers={"Content-Disposition": 'attachment; filename="personal-data.json"'},
        )

    @put(sync_to_thread=True, responses=problems(*BODY, *BEARER_ERRORS))
    def update(
        self,
        claims: NamedDependency[Caller],
        data: JSONBody[ProfileUpdate],
        profile: NamedDependency[Profile],
    ) -> AccountView:
        return profile.update(claims.account_id, data.display_name)
