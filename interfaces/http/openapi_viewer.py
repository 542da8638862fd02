"""The API's browsable docs at /schema: Swagger UI, served from the installed package
(swagger-ui-bundle-v2) rather than a CDN, so they work on a site with no way out to the internet.

Litestar's own viewers load their scripts from CDNs; only the JSON document and this one are
served. The pages under /schema get a policy of their own: scripts and styles from this origin
only (Swagger UI sets inline styles from script, which CSP allows; it writes no <style>).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from litestar import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from swagger_ui_bundle import swagger_ui_path

PATH = "/schema"
ASSETS = "/swagger-ui"  # under PATH
OWN_ASSETS = Path(__file__).parent / "api_docs"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)


class OfflineSwaggerUI(OpenAPIRenderPlugin):
    """Swagger UI, its files served by this app under /schema/swagger-ui/."""

    def __init__(self) -> None:
        super().__init__(path=["/", "/swagger"], favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(str(openapi_schema.get("info", {}).get("title", "API")))
        assets = PATH + ASSETS
        spec = html.escape(self.get_openapi_json_route(request))
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} API</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<script src="{assets}/swagger-ui-bundle.js" defer></script>
<script src="{assets}/tessera-swagger.js" defer></script>
</head>
<body>
<div id="swagger-ui" data-spec-url="{spec}"></div>
</body>
</html>
""".encode()

    def receive_router(self, router: Router) -> None:
        router.register(
            create_static_files_router(
                path=ASSETS,
                directories=[OWN_ASSETS, Path(str(swagger_ui_path))],
                name="swagger-ui",
                include_in_schema=False,
            )
        )


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """New ones for each app, as Litestar makes its defaults: each is handed its app's router."""
    return [JsonRenderPlugin(path="/openapi.json"), OfflineSwaggerUI()]


def docs_policy(app: ASGIApp) -> ASGIApp:
    """The viewer's policy on every answer under /schema."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if not scope["path"].startswith(PATH):
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                headers["content-security-policy"] = CONTENT_SECURITY_POLICY
                headers["x-content-type-options"] = "nosniff"
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
