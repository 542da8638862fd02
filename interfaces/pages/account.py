"""My account: profile, password, MFA, sessions, sign out, deletion; and passkeys, once the
container has them. Every form posts to one command of the API's own use cases."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.response import Redirect

from application.factors.mfa import Enrollment
from application.ports import Caller
from domain.errors import DomainError, FieldError, Invalid
from interfaces.http.schemas import (
    ChangePasswordRequest,
    EraseRequest,
    MfaRequest,
    PasskeyRemovalRequest,
    ProfileUpdate,
)
from interfaces.pages.authorize import ASKS
from interfaces.pages.public import Notice
from interfaces.pages.qr import qr_code
from interfaces.pages.site import Site, Visit, in_thread, parse, refusal

AnyRequest = Request[Any, Any, Any]
Page = Response[str] | Redirect
DONE = {
    "profile": "Your profile is saved.",
    "password": "Your password is changed; every other session has ended.",
    "mfa-off": "Two-step sign-in is off.",
    "session-ended": "That session has ended.",
    "passkey-removed": "The passkey is removed.",
    "identity-unlinked": "The sign-in with that provider is unlinked.",
    "consent-revoked": "That app no longer has access; its sessions have ended.",
}


async def account_page(
    site: Site,
    visit: Visit,
    caller: Caller,
    status: int = 200,
    *,
    errors: list[str] | None = None,
    notice: str | None = None,
    enrollment: Enrollment | None = None,
    recovery_codes: list[str] | None = None,
) -> Response[str]:
    app = site.container
    profile = await app.profile.show(caller)
    mfa_on = await in_thread(app.mfa.enabled, caller)
    asks = await in_thread(app.reauthentication.asks, caller)
    # The sessions read model, caught up with this caller's own commands (as the API's read).
    await in_thread(app.read_side.caught_up, "sessions", caller.written)
    sessions = await in_thread(app.read_side.live_sessions, caller.account_id, caller.session_id)
    passkeys = await in_thread(site.passkeys.list, caller) if site.passkeys else []
    identities = await in_thread(app.external_sign_in.identities, caller)
    linked = {i.provider for i in identities}
    providers = app.external_sign_in.providers()
    consents = await in_thread(app.consents.of, caller.account_id)
    return site.page(
        visit,
        "account.html",
        status,
        profile=profile,
        mfa_enabled=mfa_on,
        # What re-authenticated forms ask: no password field for an account without one (a
        # recent sign-in proves it).
        asks_password=asks.password,
        reauth_minutes=max(1, app.settings.reauth_max_age // 60),
        sessions=sessions,
        passkey_list=passkeys,
        identities=identities,
        providers=providers,
        unlinked_providers=[p for p in providers if p.name not in linked],
        provider_labels={p.name: p.label for p in providers},
        consents=consents,
        scope_words=ASKS,
        errors=errors or [],
        notice=notice,
        enrollment=enrollment,
        enrollment_qr=(
            qr_code(enrollment.otpauth_uri, "QR code of the link below") if enrollment else None
        ),
        recovery_codes=recovery_codes,
        recovery_codes_file=(
            codes_file(app.settings.product_name, profile.username, recovery_codes)
            if recovery_codes
            else None
        ),
    )


def codes_file(product: str, username: str, codes: list[str]) -> str:
    """The recovery codes as a text file to keep, in a data: link the page offers with a
    `download` name: no script, no second request, and nothing kept on the server to fetch."""
    lines = [
        f"{product} recovery codes for {username}",
        "Each works once, in place of a code from your authenticator app.",
        "",
        *codes,
        "",
    ]
    return "data:text/plain;charset=utf-8," + quote("\n".join(lines), safe="")


class AccountPages(Controller):
    include_in_schema = False

    @get("/account")
    async def show(
        self, request: AnyRequest, site: NamedDependency[Site], done: Notice = None
    ) -> Page:
        visit = await site.visit(request)
        if visit.caller is None:
            return site.redirect(visit, "/login?next=/account")  # the page then says why
        return await account_page(site, visit, visit.caller, notice=DONE.get(done or ""))

    @post("/account/profile")
    async def update_profile(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit, caller, fields = await _signed_in_post(request, site)
        if caller is None:
            return site.redirect(visit, "/login")
        try:
            data = parse(fields, ProfileUpdate)
            await in_thread(site.container.profile.update, caller.account_id, data.display_name)
        except DomainError as error:
            return await _refused(site, visit, caller, error)
        return site.redirect(visit, "/account?done=profile")

    @post("/account/password")
    async def change_password(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit, caller, fields = await _signed_in_post(request, site)
        if caller is None:
            return site.redirect(visit, "/login")
        try:
            data = parse(fields, ChangePasswordRequest)
            await in_thread(
                site.container.passwords.change,
                caller,
                data.current_password,
                data.new_password,
                data.code,
            )
        except DomainError as error:
            return await _refused(site, visit, caller, error)
        return site.redirect(visit, "/account?done=password")

    @post("/account/mfa")
    async def mfa(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit, caller, fields = await _signed_in_post(request, site)
        if caller is None:
            return site.redirect(visit, "/login")
        mfa = site.container.mfa
        try:
            data = parse(fields, MfaRequest)
            if data.action == "enable":
                # Shown once, in this answer: the secret is not kept anywhere it can be read.
                enrollment = await in_thread(mfa.enroll, caller)
                return await account_page(site, visit, caller, enrollment=enrollment)
            if data.action == "confirm":
                if data.code is None:
                    raise Invalid(FieldError("code", "required", "is required to confirm"))
                codes = await in_thread(mfa.confirm, caller, data.code)
                return await account_page(site, visit, caller, recovery_codes=codes)
            if data.action == "recovery_codes":
                codes = await in_thread(mfa.renew_recovery_codes, caller, data.proof())
                return await account_page(site, visit, caller, recovery_codes=codes)
            await in_thread(mfa.disable, caller, data.proof())
        except DomainError as error:
            return await _refused(site, visit, caller, error)
        return site.redirect(visit, "/account?done=mfa-off")

    @post("/account/sessions/end")
    async def end_session(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit, caller, fields = await _signed_in_post(request, site)
        if caller is None:
            return site.redirect(visit, "/login")
        try:
            session_id = UUID(fields.get("session_id", ""))
        except ValueError:
            return await _refused(
                site, visit, caller, Invalid(FieldError("session_id", "schema", "is no session"))
            )
        try:
            await in_thread(site.container.sessions.end, caller, session_id)
        except DomainError as error:
            return await _refused(site, visit, caller, error)
        if session_id == caller.session_id:
            site.sign_out(visit)
            return site.redirect(visit, "/login?done=session-ended")
        return site.redirect(visit, "/account?done=session-ended")

    @post("/account/passkeys/remove")
    async def remove_passkey(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit, caller, fields = await _signed_in_post(request, site)
        if caller is None:
            return site.redirect(visit, "/login")
        if site.passkeys is None:
            return site.redirect(visit, "/account")
        try:
            data = parse(
                {k: v for k, v in fields.items() if k != "passkey_id"}, PasskeyRemovalRequest
            )
            passkey_id = fields.get("passkey_id", "")
            await in_thread(site.passkeys.remove, caller, passkey_id, data.proof())
        except DomainError as error:
            return await _refused(site, visit, caller, error)
        return site.redirect(visit, "/account?done=passkey-removed")

    @post("/account/consents/revoke")
    async def revoke_consent(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit, caller, fields = await _signed_in_post(request, site)
        if caller is None:
            return site.redirect(visit, "/login")
        try:
            await in_thread(
                site.container.consents.revoke,
                caller.account_id,
                fields.get("client_id", ""),
                site.client(request),
            )
        except DomainError as error:
            return await _refused(site, visit, caller, error)
        return site.redirect(visit, "/account?done=consent-revoked")

    @post("/logout")
    async def sign_out(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit, caller, fields = await _signed_in_post(request, site)
        if caller is not None:
            sessions = site.container.sessions
            if fields.get("everywhere") == "yes":
                await in_thread(sessions.log_out, caller, None, True)
            else:
                await in_thread(sessions.sign_out_browser, caller, visit.refresh_token)
        site.sign_out(visit)
        return site.redirect(visit, "/login?done=signed-out")

    @post("/account/delete")
    async def delete(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit, caller, fields = await _signed_in_post(request, site)
        if caller is None:
            return site.redirect(visit, "/login")
        try:
            data = parse(fields, EraseRequest)
            await in_thread(site.container.erasure.erase_own, caller, data.proof())
        except DomainError as error:
            return await _refused(site, visit, caller, error)
        site.sign_out(visit)
        return site.redirect(visit, "/login?done=deleted")


async def _signed_in_post(
    request: AnyRequest, site: Site
) -> tuple[Visit, Caller | None, dict[str, str]]:
    """The visit, its caller (None: signed out, the handler redirects to sign in), and the
    form's fields once the CSRF token is shown to belong to this browser and session."""
    visit = await site.visit(request)
    fields = await site.form(request, visit)
    return visit, visit.caller, fields


async def _refused(site: Site, visit: Visit, caller: Caller, error: DomainError) -> Response[str]:
    status, errors = refusal(error)
    return await account_page(site, visit, caller, status, errors=errors)
