"""One browser's visit: who it is signed in as (through the same Access and Login use cases as
the API), its CSRF nonce, and the rendering of a page for it."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import MediaType, Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect

from application.ports import Caller
from application.views import Client, TokenPair
from domain.errors import DomainError, FieldError, Invalid
from infrastructure import metrics
from interfaces.container import Container
from interfaces.http.problems import DOMAIN_PROBLEMS
from interfaces.http.security import ClientAddress, attribute_to
from interfaces.pages.guard import (
    CookieJar,
    CsrfTokens,
    from_this_site,
    origin_of,
    plain_local_http,
)

T = TypeVar("T")
TEMPLATES = Path(__file__).parent / "templates"
_MAX_COOKIE = 4096


@dataclass
class Visit:
    """What one request's browser brought, and the cookies its answer must set."""

    nonce: str
    caller: Caller | None = None
    refresh_token: str | None = None
    cookies: list[Cookie] = field(default_factory=list)

    @property
    def session(self) -> str:
        """What the CSRF token binds to besides the nonce: the tessera session, if any."""
        return str(self.caller.session_id) if self.caller else ""


class Site:
    def __init__(self, container: Container) -> None:
        settings = container.settings
        self.container = container
        self.https = not plain_local_http(settings.public_url)
        self.jar = CookieJar(secure=self.https, max_age=settings.refresh_token_ttl)
        self.csrf = CsrfTokens(container.csrf_key)
        self.origin = origin_of(settings.public_url)
        self.client_address = ClientAddress(settings.trusted_proxies)
        # Passkeys are built elsewhere; their buttons show only once the container has them.
        self.passkeys: Any = getattr(container, "passkeys", None)
        self._templates = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    async def visit(self, request: Request[Any, Any, Any]) -> Visit:
        nonce = request.cookies.get(self.jar.nonce, "")
        visit = Visit(nonce=nonce)
        if not 20 <= len(nonce) <= 100:
            self.renew_nonce(visit)
        access = request.cookies.get(self.jar.access, "")
        refresh = request.cookies.get(self.jar.refresh, "")
        if not (access or refresh):
            return visit
        visit.caller = await self._caller(access)
        visit.refresh_token = refresh or None
        if visit.caller is None and refresh and len(refresh) < _MAX_COOKIE:
            # The access token ran out (or was revoked): the refresh token, through the same
            # rotation as the API's, renews it, unless the session was ended meanwhile.
            try:
                tokens = await self.container.sessions.rotate(refresh)
            except DomainError:
                tokens = None
            if tokens is not None:
                metrics.TOKENS.labels(operation="refreshed").inc()
                visit.caller = await self._caller(tokens.access_token)
                visit.refresh_token = tokens.refresh_token
                visit.cookies += self.jar.session(tokens)
        if visit.caller is None:
            self.sign_out(visit)
        else:
            attribute_to(visit.caller)
        return visit

    async def _caller(self, access_token: str) -> Caller | None:
        if not access_token or len(access_token) > _MAX_COOKIE:
            return None
        try:
            return await self.container.access.authenticate(access_token)
        except DomainError:
            return None

    def renew_nonce(self, visit: Visit) -> None:
        visit.nonce = self.csrf.new_nonce()
        visit.cookies.append(self.jar.csrf(visit.nonce))

    def sign_in(self, visit: Visit, tokens: TokenPair) -> None:
        self.renew_nonce(visit)
        visit.cookies += self.jar.session(tokens)

    def sign_out(self, visit: Visit) -> None:
        visit.caller = None
        visit.refresh_token = None
        self.renew_nonce(visit)
        visit.cookies += self.jar.ended()

    def client(self, request: Request[Any, Any, Any]) -> Client:
        return self.client_address.of(request)

    async def form(
        self, request: Request[Any, Any, Any], visit: Visit, session: str | None = None
    ) -> dict[str, str]:
        """The posted fields, once the post is shown to come from one of this site's own
        forms, rendered for this browser and this session; 403 otherwise, before anything.
        `session`: the one the form was rendered for, when that is known to differ from the
        visit's (a page reached from another site is rendered without the session's cookies)."""
        if not from_this_site(request.headers, self.origin):
            raise PermissionDeniedException("This form was sent from another site.")
        posted = await request.form()
        fields = {key: value for key, value in posted.items() if isinstance(value, str)}
        bound = visit.session if session is None else session
        if not self.csrf.valid(fields.pop("csrf_token", None), visit.nonce, bound):
            raise PermissionDeniedException("This form has expired; reload the page.")
        return fields

    def page(self, visit: Visit, template: str, status: int = 200, **context: Any) -> Response[str]:
        html = self._templates.get_template(template).render(
            csrf_token=self.csrf.token(visit.nonce, visit.session),
            signed_in=visit.caller is not None,
            product=self.container.settings.product_name,
            passkeys=self.passkeys is not None,
            **context,
        )
        return Response(
            html, status_code=status, media_type=MediaType.HTML, cookies=list(visit.cookies)
        )

    def error_page(self, status: int, message: str) -> Response[str]:
        html = self._templates.get_template("error.html").render(
            product=self.container.settings.product_name, status=status, message=message
        )
        return Response(html, status_code=status, media_type=MediaType.HTML)

    def redirect(self, visit: Visit, path: str) -> Redirect:
        """303: after a POST, the browser GETs the next page (no re-post on reload)."""
        return Redirect(path, status_code=303, cookies=list(visit.cookies))


S = TypeVar("S", bound=msgspec.Struct)
_FIELD_PATH = re.compile(r"at `\$\.?([^`]*)`")


def parse(fields: dict[str, str], shape: type[S]) -> S:
    """A form read as the API's own request struct: the same bounds, the same refusals. An
    optional field left empty is absent (as it would be from a JSON client)."""
    optional = {f.encode_name for f in msgspec.structs.fields(shape) if not f.required}
    present = {k: v for k, v in fields.items() if not (k in optional and v == "")}
    try:
        return msgspec.convert(present, shape)
    except msgspec.ValidationError as error:
        message = str(error)
        match = _FIELD_PATH.search(message)
        field = match.group(1) if match else "form"
        text = message[: match.start()].rstrip(" -") if match else message
        raise Invalid(FieldError(field or "form", "schema", text)) from None


def refusal(error: DomainError) -> tuple[int, list[str]]:
    """The status and the messages a form shows for a refused command: the API's own
    wording, from the one map where HTTP meets the domain."""
    for kind in type(error).__mro__:
        if kind in DOMAIN_PROBLEMS:
            status, _, detail = DOMAIN_PROBLEMS[kind]
            break
    else:
        return 500, ["An unexpected error occurred."]
    if isinstance(error, Invalid):
        return status, [f"{e.field.replace('_', ' ')}: {e.message}" for e in error.errors]
    return status, [detail]


def sign_in_buttons(site: Site) -> dict[str, Any]:
    """The sign-in page's context for its buttons of other identity providers: each a plain
    link to the API's start, coming back to the pages' own /login/oidc."""
    return {
        "providers": site.container.external_sign_in.providers(),
        "oidc_redirect_uri": site.container.settings.pages_sign_in_uri,
    }


async def in_thread(command: Callable[..., T], *args: Any) -> T:
    """Use cases block (argon2, the store): off the event loop, in the app's request threads,
    with this request's context (the client its events name)."""
    return await asyncio.to_thread(command, *args)


async def replace_session(site: Site, visit: Visit, tokens: TokenPair) -> None:
    """Signs the browser in with `tokens`, ending the session it had (a person asked to sign
    in again by an app): one browser, one session."""
    if visit.caller is not None:
        with contextlib.suppress(DomainError):  # ended meanwhile
            await in_thread(
                site.container.sessions.log_out, visit.caller, visit.refresh_token, False
            )
    site.sign_in(visit, tokens)
