"""The pages before a session: register, the mail links (verify, reset), sign in."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect

from application.views import MfaChallenge
from domain.errors import DomainError
from domain.identity import normalise_email
from infrastructure import metrics
from interfaces.http.auth import run_quietly
from interfaces.http.problems import code_of
from interfaces.http.schemas import (
    ForgotPasswordRequest,
    LoginRequest,
    MfaLoginRequest,
    RegisterRequest,
    ResetPasswordRequest,
    VerifyEmailRequest,
)
from interfaces.pages.guard import same_site_path
from interfaces.pages.site import (
    Site,
    Visit,
    in_thread,
    parse,
    refusal,
    replace_session,
    sign_in_buttons,
)

AnyRequest = Request[Any, Any, Any]
Page = Response[str] | Redirect
# Notices a page may show after a redirect: a fixed key in the URL, never a message or token.
NOTICES = {
    "signed-out": "You are signed out.",
    "verified": "Your email address is verified: you can sign in.",
    "password-reset": "Your password is changed and every session ended: sign in again.",
    "deleted": "Your account is deleted.",
    "session-ended": "That session was yours, so you are signed out.",
}
Notice = Annotated[str | None, QueryParameter(max_length=32)]
# Where a sign-in goes next: a path on this site only (same_site_path).
Next = Annotated[str | None, QueryParameter(max_length=512)]
# Why the sign-in page is shown, by where it goes next: a person sent here from a page they
# asked for is told so.
REASONS = {
    "/account": "Sign in to see your account.",
    "/oauth2/authorize": "Sign in to continue to the app.",
}
LoginHint = Annotated[str | None, QueryParameter(max_length=254)]
# An app asked that the person prove who they are again (prompt=login, max_age): the sign-in
# page is shown to a signed-in browser too, whose session the new sign-in replaces.
Again = Annotated[str | None, QueryParameter(max_length=1)]
LinkToken = Annotated[str, QueryParameter(max_length=256)]


class PublicPages(Controller):
    include_in_schema = False

    @get("/")
    async def home(self, request: AnyRequest, site: NamedDependency[Site]) -> Redirect:
        """Where a person lands first: their account, or the sign-in page."""
        visit = await site.visit(request)
        return site.redirect(visit, "/account" if visit.caller is not None else "/login")

    @get("/register")
    async def register_form(
        self, request: AnyRequest, site: NamedDependency[Site]
    ) -> Response[str]:
        visit = await site.visit(request)
        return site.page(visit, "register.html")

    @post("/register")
    async def register(self, request: AnyRequest, site: NamedDependency[Site]) -> Response[str]:
        visit = await site.visit(request)
        fields = await site.form(request, visit)
        app = site.container
        try:
            data = parse(fields, RegisterRequest)
            await in_thread(app.throttle.check, "register", site.client(request).ip)
            await in_thread(app.registration.register, data.email, data.username, data.password)
        except DomainError as error:
            status, errors = refusal(error)
            return site.page(visit, "register.html", status, errors=errors, form=fields)
        return site.page(
            visit,
            "message.html",
            title="Check your mail",
            text="We have sent a link to confirm your email address. Open it to finish.",
        )

    @get("/verify-email")
    async def verify_form(
        self, request: AnyRequest, site: NamedDependency[Site], token: LinkToken = ""
    ) -> Response[str]:
        # Shows a button and spends nothing: a mail scanner that follows the link consumes no
        # token; the person's click posts it back.
        visit = await site.visit(request)
        return site.page(visit, "verify.html", token=token)

    @post("/verify-email")
    async def verify(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit = await site.visit(request)
        fields = await site.form(request, visit)
        try:
            data = parse(fields, VerifyEmailRequest)
            await in_thread(site.container.registration.verify_email, data.token)
        except DomainError as error:
            status, errors = refusal(error)
            return site.page(visit, "verify.html", status, errors=errors, token="")
        return site.redirect(visit, "/login?done=verified")

    @get("/login")
    async def login_form(
        self,
        request: AnyRequest,
        site: NamedDependency[Site],
        done: Notice = None,
        next: Next = None,
        login_hint: LoginHint = None,
        again: Again = None,
    ) -> Page:
        visit = await site.visit(request)
        target = same_site_path(next)
        if visit.caller is not None and not again:
            return site.redirect(visit, target or "/account")
        notice = NOTICES.get(done or "") or _reason(target)
        if again and visit.caller is not None:
            notice = "The app asks you to sign in again."
        return site.page(
            visit,
            "login.html",
            notice=notice,
            next=target,
            login=login_hint,  # an app's OpenID Connect login_hint: who it expects
            **sign_in_buttons(site),
        )

    @post("/login")
    async def login(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit = await site.visit(request)
        fields = await site.form(request, visit)
        target = same_site_path(fields.pop("next", None))
        app = site.container
        client = site.client(request)
        try:
            data = parse(fields, LoginRequest)
            await in_thread(app.throttle.check, "login", client.ip, data.login)
            result = await in_thread(app.login.log_in, data.login, data.password, client)
        except DomainError as error:
            metrics.LOGINS.labels(outcome=code_of(error)).inc()
            status, errors = refusal(error)
            return site.page(
                visit,
                "login.html",
                status,
                errors=errors,
                login=fields.get("login"),
                next=target,
                **sign_in_buttons(site),
            )
        if isinstance(result, MfaChallenge):
            metrics.LOGINS.labels(outcome="mfa_required").inc()
            # The MFA token goes in the form's hidden field, never in a URL.
            return site.page(visit, "login_mfa.html", mfa_token=result.mfa_token, next=target)
        metrics.LOGINS.labels(outcome="success").inc()
        await replace_session(site, visit, result)
        return site.redirect(visit, target or "/account")

    @post("/login/mfa")
    async def login_mfa(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit = await site.visit(request)
        fields = await site.form(request, visit)
        target = same_site_path(fields.pop("next", None))
        app = site.container
        client = site.client(request)
        try:
            data = parse(fields, MfaLoginRequest)
            subject = await in_thread(app.login.mfa_subject, data.mfa_token)
            await in_thread(app.throttle.check, "mfa", client.ip, str(subject))
            tokens = await in_thread(app.login.complete_mfa, data.mfa_token, data.code, client)
        except DomainError as error:
            metrics.LOGINS.labels(outcome=code_of(error)).inc()
            status, errors = refusal(error)
            if code_of(error) == "invalid_mfa_token":
                return site.page(
                    visit, "login.html", status, errors=errors, next=target, **sign_in_buttons(site)
                )
            return site.page(
                visit,
                "login_mfa.html",
                status,
                errors=errors,
                mfa_token=fields.get("mfa_token"),
                next=target,
            )
        metrics.LOGINS.labels(outcome="success").inc()
        await replace_session(site, visit, tokens)
        return site.redirect(visit, target or "/account")

    @get("/forgot-password")
    async def forgot_form(self, request: AnyRequest, site: NamedDependency[Site]) -> Response[str]:
        visit = await site.visit(request)
        return site.page(visit, "forgot.html")

    @post("/forgot-password")
    async def forgot(self, request: AnyRequest, site: NamedDependency[Site]) -> Response[str]:
        visit = await site.visit(request)
        fields = await site.form(request, visit)
        app = site.container
        try:
            data = parse(fields, ForgotPasswordRequest)
            normalise_email(data.email)
            await in_thread(
                app.throttle.check, "forgot_password", site.client(request).ip, data.email
            )
        except DomainError as error:
            status, errors = refusal(error)
            return site.page(visit, "forgot.html", status, errors=errors, email=fields.get("email"))
        page = site.page(
            visit,
            "message.html",
            title="Check your mail",
            text="If the address belongs to an account, a link to reset its password is on its way.",
        )
        # As in the API: the work happens after the answer, so neither the page nor its timing
        # tells whether the address has an account.
        page.background = BackgroundTask(run_quietly, app.passwords.forget, data.email)
        return page

    @get("/reset-password")
    async def reset_form(
        self, request: AnyRequest, site: NamedDependency[Site], token: LinkToken = ""
    ) -> Response[str]:
        visit = await site.visit(request)
        return site.page(visit, "reset.html", token=token)

    @post("/reset-password")
    async def reset(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit = await site.visit(request)
        fields = await site.form(request, visit)
        app = site.container
        try:
            data = parse(fields, ResetPasswordRequest)
            await in_thread(app.throttle.check, "reset_password", site.client(request).ip)
            await in_thread(app.passwords.reset, data.token, data.new_password)
        except DomainError as error:
            status, errors = refusal(error)
            return site.page(visit, "reset.html", status, errors=errors, token=fields.get("token"))
        # Every session of the account ended, this browser's too if it had one.
        site.sign_out(visit)
        return site.redirect(visit, "/login?done=password-reset")


def _reason(target: str | None) -> str | None:
    if target is None:
        return None
    return REASONS.get(target.split("?", 1)[0], "Sign in to continue.")


__all__ = ["NOTICES", "PublicPages", "Visit"]
