"""RP-Initiated Logout 1.0 at /oauth2/logout: an app sends the person here to be signed out.

The app's request (GET, or a form POST from its own page) arrives as a cross-site navigation,
so the page session's SameSite=Strict cookies are not sent with it: who is signed in is not
known yet, and nothing is ended on it. The answer is a page whose form posts, same-site with
every cookie, to /oauth2/logout/end:

- with a valid `id_token_hint` (an ID token we signed for a live app), the form submits itself:
  the app proved which sign-in it means, so the browser session the hint names is signed out
  without a question, if it is this browser's;
- without one (or with a hint of another issuer, of a removed app, or naming another session),
  the page asks the person to confirm: no page can sign anyone out by a link.

Either way the form is CSRF-protected, rendered for no session (as the provider sign-in's
return, interfaces/pages/oidc.py), and everything it carries is checked again when posted. The
person is sent back only to a `post_logout_redirect_uri` registered for that app exactly, by a
link on the last page (the pages' CSP, form-action 'self', forbids a form's post to end at
another site), with the app's `state`. `ui_locales` is accepted and ignored: the pages speak
English only.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, HttpMethod, Request, Response, post, route
from litestar.di import NamedDependency

from application.clients.logout import LogoutRequest
from domain.client import MAX_URI
from interfaces.pages.site import Site, Visit, in_thread

AnyRequest = Request[Any, Any, Any]
NO_SESSION = ""
# What the app may send, with the longest value taken; anything else is ignored (RP-Initiated
# Logout 1.0, 2). An ID token with many claims is long, but not longer than this.
PARAMETERS = {
    "id_token_hint": 8192,
    "client_id": 64,
    "post_logout_redirect_uri": MAX_URI,
    "state": 1024,
    "ui_locales": 64,
}
CARRIED = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state")


class LogoutPages(Controller):
    include_in_schema = False

    @route("/oauth2/logout", http_method=[HttpMethod.GET, HttpMethod.POST])
    async def asked(self, request: AnyRequest, site: NamedDependency[Site]) -> Response[str]:
        """The app's request: nothing is ended here, for want of the session's cookies."""
        visit = _unbound(await site.visit(request))
        if request.method == HttpMethod.POST:
            fields = list((await request.form()).multi_items())
        else:
            fields = list(request.query_params.multi_items())
        parameters = _parameters(fields)
        if parameters is None:
            return site.error_page(400, "This sign-out request is malformed.")
        asked = await _read(site, parameters)
        carried = {k: v for k, v in parameters.items() if k in CARRIED}
        template = "logout_continue.html" if asked.hint else "logout_confirm.html"
        return site.page(visit, template, app=asked.client, carried=carried)

    @post("/oauth2/logout/end")
    async def end(self, request: AnyRequest, site: NamedDependency[Site]) -> Response[str]:
        visit = await site.visit(request)
        fields = await site.form(request, visit, session=NO_SESSION)
        parameters = _parameters(list(fields.items()))
        if parameters is None:
            return site.error_page(400, "This sign-out request is malformed.")
        asked = await _read(site, parameters)
        caller = visit.caller
        confirmed = fields.get("confirm") == "yes"
        if caller is not None and not (confirmed or asked.names(caller.session_id)):
            # A hint of another sign-in than this browser's: the person decides.
            carried = {k: v for k, v in parameters.items() if k in CARRIED}
            return site.page(
                _unbound(visit), "logout_confirm.html", app=asked.client, carried=carried
            )
        if caller is not None:
            await in_thread(site.container.sessions.sign_out_browser, caller, visit.refresh_token)
        site.sign_out(visit)
        return site.page(visit, "logout_done.html", app=asked.client, return_to=asked.return_to)


def _unbound(visit: Visit) -> Visit:
    """The visit as a form here is rendered for: this browser's CSRF nonce, no session."""
    return Visit(nonce=visit.nonce, cookies=visit.cookies)


def _parameters(fields: list[tuple[str, Any]]) -> dict[str, str] | None:
    """The request's parameters, or None when one is repeated, too long or not text."""
    known = [(name, value) for name, value in fields if name in PARAMETERS]
    names = [name for name, _ in known]
    if len(set(names)) != len(names):
        return None
    parameters = {}
    for name, value in known:
        if not isinstance(value, str) or len(value) > PARAMETERS[name]:
            return None
        if value:
            parameters[name] = value
    return parameters


async def _read(site: Site, parameters: dict[str, str]) -> LogoutRequest:
    return await in_thread(
        site.container.logout.read,
        parameters.get("id_token_hint"),
        parameters.get("client_id"),
        parameters.get("post_logout_redirect_uri"),
        parameters.get("state"),
    )
