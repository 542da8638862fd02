"""The OpenID Provider's authorization endpoint (RFC 6749 4.1, OIDC Core 3.1.2): a page, since it
needs the person's browser session. Authlib's server validates each request and issues the
answer (interfaces/http/oauth2_server.py); this module decides what the person must do first:
sign in (again), allow the app, or nothing.

The page session's cookies are SameSite=Strict, so an app's link (a cross-site navigation)
arrives without them: such a request is answered with a page of this site that navigates to the
same address again, a same-site navigation that carries them. The request waits server-side
while the person signs in or decides (the sign-in's `next` holds only its id)."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oidc.core.errors import ConsentRequiredError, LoginRequiredError
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency

from application.ports import OneTimeValues
from domain.errors import DomainError
from interfaces.http.oauth2_server import (
    Form,
    FormRequest,
    PersonCode,
    SignedIn,
    TesseraAuthorizationServer,
)
from interfaces.pages.site import Site, Visit, in_thread

AnyRequest = Request[Any, Any, Any]
PENDING_FOR = timedelta(minutes=15)  # long enough to sign in, with MFA or a reset mail
_PENDING = "oauth2_pending"
MAX_PARAMETERS = 30
MAX_QUERY = 8192
# What each scope lets an app have, in plain words (the consent page).
ASKS = {
    "openid": "Know that it is you (an identifier for your account, the same each time)",
    "profile": "See your username and display name",
    "email": "See your email address and whether it is verified",
    "offline_access": "Stay connected while you are away (until you take it back)",
}


class PendingRequests:
    """Authorization requests waiting for the person (a sign-in, a decision): kept in the
    store of one-time values, each taken once by the request that resumes it."""

    def __init__(self, store: OneTimeValues, site: Site) -> None:
        self._store = store
        self._clock = site.container.clock

    # The store is a database or Redis: read and written off the event loop, which serves the
    # rest of the process's requests meanwhile.

    async def put(self, params: list[tuple[str, str]], since: float | None) -> str:
        request_id = secrets.token_urlsafe(24)
        value = json.dumps({"params": params, "since": since}, separators=(",", ":"))
        expires_at = self._clock.now() + PENDING_FOR
        await in_thread(self._store.put, _key(request_id), f"{_PENDING} {value}", expires_at)
        return request_id

    async def take(self, request_id: str) -> tuple[list[tuple[str, str]], float | None] | None:
        if not 20 <= len(request_id) <= 64:
            return None
        taken = await in_thread(self._store.take, _key(request_id), self._clock.now())
        if taken is None or not taken.startswith(f"{_PENDING} "):
            return None
        state = json.loads(taken.removeprefix(f"{_PENDING} "))
        return [(str(k), str(v)) for k, v in state["params"]], state["since"]


def _key(request_id: str) -> bytes:
    return hashlib.sha256(f"{_PENDING}|{request_id}".encode()).digest()


class Authorization:
    """One authorization request's way through the person's side."""

    def __init__(self, site: Site, server: TesseraAuthorizationServer) -> None:
        self.site = site
        self.server = server
        self.pending = PendingRequests(site.container.one_time_values, site)

    def oauth_request(self, request: AnyRequest, params: list[tuple[str, str]]) -> FormRequest:
        uri = self.site.container.settings.public_url.rstrip("/") + "/oauth2/authorize"
        return FormRequest(
            uri, request.headers, Form(params), origin=self.site.client(request), method="GET"
        )

    async def grant(
        self, oauth_request: FormRequest, user: SignedIn | None
    ) -> PersonCode | Response[str]:
        try:
            grant: PersonCode = await in_thread(self.server.get_consent_grant, oauth_request, user)
        except OAuth2Error as error:
            return self.refused(error, oauth_request)
        return grant

    def refused(
        self,
        error: OAuth2Error,
        oauth_request: FormRequest,
        visit: Visit | None = None,
        resumed: bool = False,
    ) -> Response[str]:
        """Back to the app with the error (RFC 6749, 4.1.2.1) when its redirect URI is known
        to be the app's; else an error page, never a redirect to an unchecked address."""
        if not error.redirect_uri:
            return self.site.error_page(400, _plain(error))
        params = [("error", error.error)]
        if error.description:
            params.append(("error_description", error.description))
        state = oauth_request.payload.data.get("state")
        if state:
            params.append(("state", state))
        params.append(("iss", self.server.issuer))  # RFC 9207
        url = add_params_to_uri(error.redirect_uri, params)
        return self.leave(url, visit, status=200 if resumed and visit else 302)

    def leave(self, url: str, visit: Visit | None, status: int = 302) -> Response[str]:
        """To the app: a redirect, or (after a form, whose CSP form-action would stop a
        redirect to another site) a page of this site that goes there."""
        cookies = list(visit.cookies) if visit else []
        if status == 302:
            return Response(
                "",
                status_code=302,
                headers={"Location": url},
                cookies=cookies,
                media_type=MediaType.HTML,
            )
        assert visit is not None
        return self.site.page(
            visit,
            "authorize_continue.html",
            title="Back to the app",
            text="You are being sent back to the app.",
            url=url,
        )

    async def decide(
        self,
        request: AnyRequest,
        visit: Visit,
        params: list[tuple[str, str]],
        since: float | None,
        resumed: bool,
    ) -> Response[Any]:
        """What the person must do for this request, or the app's answer."""
        site = self.site
        app = site.container
        oauth_request = self.oauth_request(request, params)
        user = _signed_in(visit)
        grant = await self.grant(oauth_request, user)
        if isinstance(grant, Response):
            return grant
        redirect_uri = grant.redirect_uri
        data = oauth_request.payload.data
        prompts = set((data.get("prompt") or "").split())
        try:
            max_age = _max_age(data.get("max_age"))
        except ValueError:
            return self.refused(
                InvalidRequestError("max_age is a number of seconds.", redirect_uri=redirect_uri),
                oauth_request,
            )
        now = app.clock.now().timestamp()
        proven_since = since is not None and user is not None and user.auth_time >= since
        stale = user is not None and (
            "login" in prompts or (max_age is not None and now - user.auth_time > max_age)
        )
        if user is None or (stale and not proven_since):
            if "none" in prompts:
                return self.refused(LoginRequiredError(redirect_uri=redirect_uri), oauth_request)
            return await self.sign_in_first(visit, params, now, data.get("login_hint"))
        assert user is not None
        view = grant.client.view
        scopes = scope_to_list(oauth_request.scope) or []
        granted = await in_thread(app.consents.granted, user.account_id, view.client_id)
        asks_consent = not view.trusted and ("consent" in prompts or not set(scopes) <= granted)
        if asks_consent:
            if "none" in prompts:
                return self.refused(ConsentRequiredError(redirect_uri=redirect_uri), oauth_request)
            request_id = await self.pending.put(params, since)
            asks = [ASKS.get(s, f"Use “{s}” on your behalf") for s in scopes]
            return site.page(
                visit, "consent.html", app_name=view.name, asks=asks, request_id=request_id
            )
        return await self.answer(grant, user, scopes, visit, resumed)

    async def answer(
        self,
        grant: PersonCode,
        user: SignedIn,
        scopes: list[str],
        visit: Visit,
        resumed: bool,
    ) -> Response[str]:
        """The code, back to the app. The consent is recorded (for a trusted app too, so its
        sessions show under "Apps with access" and end when it is taken back)."""
        app = self.site.container
        view = grant.client.view
        amr = await in_thread(app.sessions.amr_of, user.session_id, user.account_id)
        user = replace(user, amr=amr)
        try:
            await in_thread(
                app.consents.grant, user.account_id, view.client_id, scopes, grant.request.origin
            )
            _, _, headers = await in_thread(
                grant.create_authorization_response, grant.redirect_uri, user
            )
        except OAuth2Error as error:
            return self.refused(error, grant.request, visit, resumed)
        except DomainError:
            return self.site.error_page(400, "This app can no longer be signed in to.")
        location = dict(headers)["Location"]
        return self.leave(location, visit, status=200 if resumed else 302)

    async def sign_in_first(
        self, visit: Visit, params: list[tuple[str, str]], now: float, hint: str | None
    ) -> Response[Any]:
        """To the sign-in page, and back here after it. A signed-in browser is shown it too
        (prompt=login, max_age): the person proves who they are again, and the new sign-in
        replaces the browser's session. Nothing is ended before that, so a page that sends
        someone here cannot sign them out."""
        # Whole seconds: a session's auth_time is (JWT NumericDate), so a sign-in in the same
        # second as this request counts as made after it.
        request_id = await self.pending.put(params, float(int(now)))
        query = {"next": f"/oauth2/authorize?request={request_id}"}
        if hint and len(hint) <= 254:
            query["login_hint"] = hint
        if visit.caller is not None:
            query["again"] = "1"
        return self.site.redirect(visit, "/login?" + urlencode(query))


def _signed_in(visit: Visit) -> SignedIn | None:
    caller = visit.caller
    if caller is None:
        return None
    auth_time = caller.auth_time if caller.auth_time is not None else caller.issued_at
    return SignedIn(caller.account_id, caller.session_id, auth_time)


def _max_age(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise ValueError(value)
    return int(value)


def _plain(error: OAuth2Error) -> str:
    """An error the person sees when the app cannot be told (an unknown app, a redirect URI
    not registered for it)."""
    if error.error == "invalid_client":
        return "The app that sent you here is not known here."
    return f"The app sent a request that cannot be answered: {error.description or error.error}"


def _again_from_here(site: Site, query: str) -> Response[str]:
    """A page of this site that asks for the authorization again, by GET: that navigation is
    same-site, so it carries the page session's (SameSite=Strict) cookies."""
    return site.page(
        Visit(nonce=""),
        "authorize_continue.html",
        title="Signing in",
        text="Taking you to sign in.",
        url=f"/oauth2/authorize?{query}",
    )


class AuthorizationPages(Controller):
    include_in_schema = False

    @get("/oauth2/authorize", cache=False)
    async def authorize(
        self,
        request: AnyRequest,
        site: NamedDependency[Site],
        authorization: NamedDependency[Authorization],
    ) -> Response[Any]:
        query = request.url.query or ""
        if request.headers.get("sec-fetch-site") == "cross-site":
            # Arrived from the app's page, without the Strict cookies: go again, same-site.
            if len(query) > MAX_QUERY:
                return site.error_page(400, "The request is too long.")
            return _again_from_here(site, query)
        visit = await site.visit(request)
        params = [(k, str(v)) for k, v in request.query_params.multi_items()]
        if len(params) > MAX_PARAMETERS or len(query) > MAX_QUERY:
            return site.error_page(400, "The request has too many parameters.")
        if [k for k, _ in params] == ["request"]:
            pending = await authorization.pending.take(params[0][1])
            if pending is None:
                return site.error_page(
                    400, "This sign-in request has expired: go back to the app and start again."
                )
            resumed_params, since = pending
            return await authorization.decide(request, visit, resumed_params, since, True)
        return await authorization.decide(request, visit, params, None, False)

    @post("/oauth2/authorize")
    async def consent(
        self,
        request: AnyRequest,
        site: NamedDependency[Site],
        authorization: NamedDependency[Authorization],
    ) -> Response[Any]:
        posted = [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
        names = {name for name, _ in posted}
        if "response_type" in names and not names & {"csrf_token", "request"}:
            # An authorization request sent by POST (OIDC Core 3.1.2.1), from the app's page:
            # asked again by GET, from this site, so the session's cookies come with it.
            query = urlencode(posted)
            if len(posted) > MAX_PARAMETERS or len(query) > MAX_QUERY:
                return site.error_page(400, "The request has too many parameters.")
            return _again_from_here(site, query)
        visit = await site.visit(request)
        fields = await site.form(request, visit)
        pending = await authorization.pending.take(fields.get("request", ""))
        if pending is None:
            return site.error_page(
                400, "This sign-in request has expired: go back to the app and start again."
            )
        params, _ = pending
        user = _signed_in(visit)
        if user is None:
            return site.error_page(400, "You are no longer signed in: go back to the app.")
        oauth_request = authorization.oauth_request(request, params)
        grant = await authorization.grant(oauth_request, user)
        if isinstance(grant, Response):
            return grant
        if fields.get("decision") != "allow":
            return authorization.refused(
                AccessDeniedError(redirect_uri=grant.redirect_uri), oauth_request, visit, True
            )
        scopes = scope_to_list(oauth_request.scope) or []
        return await authorization.answer(grant, user, scopes, visit, resumed=True)
