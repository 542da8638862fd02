"""Signing in with another identity provider from the pages, and linking or unlinking one from
My account: the same ExternalSignIn use case as /api/auth/oidc and /api/users/me/identities.

The sign-in button is a plain link to the API's start, with the pages' own /login/oidc as the
redirect URI (on the allow-list by itself while the pages are on). The provider sends the
browser to the API's callback, which sends it here with a one-time code, or with `?error=` when
the sign-in was refused. This page spends nothing on GET (as the mail links' pages): its form
posts the code back, and that post signs the page session in.

The browser arrives here at the end of a cross-site redirect chain, so its SameSite=Strict
cookies (the page session, the CSRF nonce) are not sent on that GET: the page is rendered for
no session, with a fresh nonce, and its form's CSRF token is checked for no session either.
The post itself is same-site and carries every cookie."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect

from application.ports import Caller
from application.views import MfaChallenge
from domain.errors import DomainError, FieldError, Invalid
from infrastructure import metrics
from interfaces.http.problems import DOMAIN_PROBLEMS, code_of
from interfaces.http.schemas import OidcExchangeRequest, Reauthenticated
from interfaces.pages.account import account_page
from interfaces.pages.guard import oidc_browser_cookie, oidc_browser_cookie_name
from interfaces.pages.site import Site, Visit, in_thread, parse, refusal, sign_in_buttons

AnyRequest = Request[Any, Any, Any]
Page = Response[str] | Redirect
Short = Annotated[str, QueryParameter(max_length=64)]
# What the callback names in `?error=`: the API's own codes, and the provider's own refusal.
REFUSALS = {
    "access_denied": "You cancelled the sign-in at the provider; nothing was changed.",
    **{code: detail for _, code, detail in DOMAIN_PROBLEMS.values()},
}
NO_SESSION = ""


class ProviderPages(Controller):
    include_in_schema = False

    @get("/login/oidc")
    async def returned(
        self,
        request: AnyRequest,
        site: NamedDependency[Site],
        code: Short = "",
        error: Short = "",
        linked: Short = "",
    ) -> Response[str]:
        visit = await site.visit(request)
        if error:
            message = REFUSALS.get(error, "The sign-in did not work; try again.")
            return site.page(visit, "login.html", 400, errors=[message], **sign_in_buttons(site))
        if linked:
            # No session cookie came with this cross-site arrival: the next click is same-site.
            label = _label(site, linked)
            return site.page(visit, "linked.html", label=label)
        return site.page(visit, "oidc_continue.html", code=code)

    @post("/login/oidc")
    async def exchange(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit = await site.visit(request)
        fields = await site.form(request, visit, session=NO_SESSION)
        app = site.container
        client = site.client(request)
        try:
            data = parse(fields, OidcExchangeRequest)
            await in_thread(app.throttle.check, "login", client.ip)
            # Only the browser that started the sign-in finishes it: another's (a code planted
            # by a link to this page) signs nobody in.
            browser = request.cookies.get(oidc_browser_cookie_name(app.settings.public_url))
            result = await in_thread(app.external_sign_in.exchange, data.code, client, browser)
        except DomainError as error:
            metrics.LOGINS.labels(outcome=code_of(error)).inc()
            status, errors = refusal(error)
            return site.page(visit, "login.html", status, errors=errors, **sign_in_buttons(site))
        if isinstance(result, MfaChallenge):
            metrics.LOGINS.labels(outcome="mfa_required").inc()
            return site.page(visit, "login_mfa.html", mfa_token=result.mfa_token)
        metrics.LOGINS.labels(outcome="success").inc()
        site.sign_in(visit, result)
        return site.redirect(visit, "/account")

    @post("/account/identities/link")
    async def link(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        """Starts a link with the page session as the account and the form's password (and
        code) as the re-authentication (the API's POST /api/auth/oidc/{provider}/link). The
        answer is a page with a link to the provider, not a redirect: the pages' CSP
        (form-action 'self') forbids a form's post to end at another site, and browsers hold
        redirects after a post to it."""
        visit = await site.visit(request)
        fields = await site.form(request, visit)
        caller = visit.caller
        if caller is None:
            return site.redirect(visit, "/login")
        app = site.container
        settings = app.settings
        provider = fields.pop("provider", "")
        try:
            proof = parse(fields, Reauthenticated).proof()
            started = await in_thread(
                app.external_sign_in.link,
                caller,
                proof,
                provider,
                settings.pages_sign_in_uri,
                request.cookies.get(oidc_browser_cookie_name(settings.public_url)),
            )
        except DomainError as error:
            return await _refused(site, visit, caller, error)
        visit.cookies.append(
            oidc_browser_cookie(
                settings.public_url, settings.oidc_state_ttl, started.browser_secret
            )
        )
        return site.page(
            visit,
            "oidc_leave.html",
            label=_label(site, provider),
            url=started.authorization_url,
        )

    @post("/account/identities/unlink")
    async def unlink(self, request: AnyRequest, site: NamedDependency[Site]) -> Page:
        visit = await site.visit(request)
        fields = await site.form(request, visit)
        caller = visit.caller
        if caller is None:
            return site.redirect(visit, "/login")
        identity_id = fields.pop("identity_id", "")
        try:
            if not 0 < len(identity_id) <= 64:
                raise Invalid(FieldError("identity_id", "schema", "is no linked identity"))
            proof = parse(fields, Reauthenticated).proof()
            await in_thread(site.container.external_sign_in.unlink, caller, identity_id, proof)
        except DomainError as error:
            return await _refused(site, visit, caller, error)
        return site.redirect(visit, "/account?done=identity-unlinked")


def _label(site: Site, provider: str) -> str:
    for known in site.container.external_sign_in.providers():
        if known.name == provider:
            return known.label
    return provider  # not one configured now: its name, escaped as any text


async def _refused(site: Site, visit: Visit, caller: Caller, error: DomainError) -> Response[str]:
    status, errors = refusal(error)
    return await account_page(site, visit, caller, status, errors=errors)
