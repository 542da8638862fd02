"""Server-rendered pages for people (PAGES_ENABLED): the mail links' targets, register, sign
in, my account. They call the API's own use cases; only the edge differs (forms, cookies)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router
from litestar.types import BeforeRequestHookHandler

from interfaces.container import Container
from interfaces.http.oauth2_server import TesseraAuthorizationServer
from interfaces.pages.account import AccountPages
from interfaces.pages.authorize import Authorization, AuthorizationPages
from interfaces.pages.guard import security_headers
from interfaces.pages.oidc import ProviderPages
from interfaces.pages.passkeys import passkey_pages
from interfaces.pages.public import PublicPages
from interfaces.pages.site import Site

STATIC = Path(__file__).parent / "static"
ICON = STATIC / "favicon.svg"


@get("/favicon.ico", media_type="image/svg+xml", sync_to_thread=False)
def favicon() -> Response[bytes]:
    """The icon the layout links, also where a browser looks for one unasked (a page without
    the link, a bookmark): the same SVG, rather than a 404 in every log."""
    return Response(ICON.read_bytes(), media_type="image/svg+xml")


def pages_router(
    container: Container,
    server: TesseraAuthorizationServer,
    before_request: BeforeRequestHookHandler,
) -> Router:
    """`before_request`: the app's attribution of requests (client, caller), without its JSON
    rules: these routes take HTML forms. `server`: the OpenID Provider's, whose authorization
    endpoint is a page."""
    site = Site(container)
    authorization = Authorization(site, server)

    def error_page(_: Request[Any, Any, Any], error: HTTPException) -> Response[str]:
        return site.error_page(error.status_code, str(error.detail))

    return Router(
        path="/",
        route_handlers=[
            PublicPages,
            AccountPages,
            ProviderPages,
            AuthorizationPages,
            *passkey_pages(site),
            favicon,
            create_static_files_router(path="/static", directories=[STATIC], name="static"),
        ],
        dependencies={
            "site": Provide(lambda: site, use_cache=True, sync_to_thread=False),
            "authorization": Provide(lambda: authorization, use_cache=True, sync_to_thread=False),
        },
        before_request=before_request,
        exception_handlers={HTTPException: error_page},
        middleware=[security_headers(site.https)],
        include_in_schema=False,
    )
