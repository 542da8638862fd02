"""Passkey ceremonies for the pages: the browser's WebAuthn calls (static/tessera.js) post here
with the page session's CSRF token in a header, and these call the same use cases as
/api/.../passkeys."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import HTTPRouteHandler

from application.factors.passkeys import Passkeys
from application.ports import Caller
from domain.errors import DomainError
from interfaces.http.schemas import Reauthenticated
from interfaces.pages.guard import from_this_site, same_site_path
from interfaces.pages.site import Site, Visit, in_thread, parse, refusal, replace_session

AnyRequest = Request[Any, Any, Any]


def passkey_pages(site: Site) -> list[HTTPRouteHandler]:
    """No routes at all while the container has no passkey use case (the buttons are hidden)."""
    passkeys: Passkeys | None = site.passkeys
    if passkeys is None:
        return []

    async def checked(request: AnyRequest) -> tuple[Visit, dict[str, Any]]:
        visit = await site.visit(request)
        token = request.headers.get("x-csrf-token")
        if not from_this_site(request.headers, site.origin) or not site.csrf.valid(
            token, visit.nonce, visit.session
        ):
            raise PermissionDeniedException("This page has expired; reload it.")
        body = await request.json()
        return visit, body if isinstance(body, dict) else {}

    def signed_in(visit: Visit) -> Caller:
        if visit.caller is None:
            raise NotAuthorizedException("Sign in first.")
        return visit.caller

    def answer(visit: Visit, content: Any, status: int = 200) -> Response[Any]:
        return Response(content, status_code=status, cookies=list(visit.cookies))

    def refused(visit: Visit, error: DomainError) -> Response[Any]:
        status, errors = refusal(error)
        return answer(visit, {"errors": errors}, status)

    @post("/account/passkeys/options", status_code=200)
    async def add_options(request: AnyRequest) -> Response[Any]:
        """Re-authenticated as the API's: the password (and a code) typed beside the button."""
        visit, body = await checked(request)
        caller = signed_in(visit)
        try:
            fields = {k: v for k, v in body.items() if k in ("password", "code") and v}
            proof = parse(fields, Reauthenticated).proof()
            return answer(visit, await in_thread(passkeys.registration_options, caller, proof))
        except DomainError as error:
            return refused(visit, error)

    @post("/account/passkeys", status_code=201)
    async def add(request: AnyRequest) -> Response[Any]:
        visit, body = await checked(request)
        caller = signed_in(visit)
        name = body.get("name") if isinstance(body.get("name"), str) else None
        try:
            await in_thread(passkeys.register, caller, body.get("credential") or {}, name)
        except DomainError as error:
            return refused(visit, error)
        return answer(visit, {"next": "/account"}, 201)

    @post("/login/passkey/options", status_code=200)
    async def sign_in_options(request: AnyRequest) -> Response[Any]:
        visit, _ = await checked(request)
        try:
            await in_thread(
                site.container.throttle.check, "passkey_options", site.client(request).ip
            )
        except DomainError as error:
            return refused(visit, error)
        offered = await in_thread(passkeys.sign_in_options, None)
        return answer(visit, offered.options)

    @post("/login/passkey", status_code=200)
    async def sign_in(request: AnyRequest) -> Response[Any]:
        visit, body = await checked(request)
        client = site.client(request)
        try:
            await in_thread(site.container.throttle.check, "login", client.ip)
            tokens = await in_thread(passkeys.sign_in, body.get("credential") or {}, client)
        except DomainError as error:
            return refused(visit, error)
        await replace_session(site, visit, tokens)
        # Back where the sign-in was going (an app's authorization request, say), as the
        # password's form does; never off this site.
        going = body.get("next")
        return answer(
            visit, {"next": same_site_path(going if isinstance(going, str) else None) or "/account"}
        )

    return [add_options, add, sign_in_options, sign_in]
