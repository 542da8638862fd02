"""The OpenID Provider's endpoints on Litestar: discovery, and the token, introspection and
revocation endpoints, each handed whole to Authlib's authorization server
(interfaces/http/oauth2_server.py). This adapter only reads the form, guards the client
authentication with the throttle, and writes Authlib's answer back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType

from application.clients.machine_tokens import ALGORITHM, MachineTokens
from application.factors.throttle import Throttle
from application.ports import ClaimSigner
from infrastructure.signing_keys import SigningKeys
from interfaces.http.oauth2_server import (
    AUTH_METHODS,
    GRANT_TYPES,
    Form,
    FormRequest,
    TesseraAuthorizationServer,
)
from interfaces.http.security import ClientAddress
from interfaces.settings import Settings

THROTTLE = "client_auth"  # failed client authentications, per client address
_FORM = RequestEncodingType.URL_ENCODED.value
_OAUTH_OPT = {"form_body": True}  # the before_request hooks leave the form to Authlib
_ERROR_BODY = {"error": "invalid_request", "error_description": ""}

Answer = tuple[int, Any, list[tuple[str, str]]]


def discovery(settings: Settings, signer: ClaimSigner) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 metadata: what exists now, and nothing more."""
    base = settings.public_url.rstrip("/")
    return {
        "issuer": settings.issuer,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "token_endpoint": f"{base}/oauth2/token",
        "introspection_endpoint": f"{base}/oauth2/introspect",
        "revocation_endpoint": f"{base}/oauth2/revoke",
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(signer.algorithms),
        "access_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
    }


def _refused(description: str, status: int = 400) -> Answer:
    body = {**_ERROR_BODY, "error_description": description}
    return status, body, [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


@dataclass(frozen=True)
class OpenIDProvider:
    """What these endpoints use, read from the app's state (`oauth2`) rather than resolved as
    dependencies: several at one depth cost Litestar a task group per request, the largest
    share of an introspection's CPU in a profile (see interfaces/http/me.py)."""

    server: TesseraAuthorizationServer
    machine_tokens: MachineTokens
    throttle: Throttle
    settings: Settings
    client_address: ClientAddress


class OAuth2Controller(Controller):
    path = "/"
    tags = ["openid provider"]
    include_in_schema = False  # RFC-defined form endpoints; their specs are their schema

    @get("/.well-known/openid-configuration", cache=False)
    async def configuration(
        self, settings: NamedDependency[Settings], claim_signer: NamedDependency[SigningKeys]
    ) -> dict[str, Any]:
        return discovery(settings, claim_signer)

    @post("/oauth2/token", opt=_OAUTH_OPT)
    async def token(self, request: Request[Any, Any, Any]) -> Response[Any]:
        provider: OpenIDProvider = request.app.state.oauth2
        return await _answer(request, provider.server.create_token_response, None)

    @post("/oauth2/introspect", opt=_OAUTH_OPT)
    async def introspect(self, request: Request[Any, Any, Any]) -> Response[Any]:
        provider: OpenIDProvider = request.app.state.oauth2

        async def unless_revoked(answer: Answer) -> Answer:
            # The revocation store is asked here, on the loop, once the thread has answered.
            status, body, headers = answer
            if status == 200:
                body = await provider.machine_tokens.unless_revoked(body)
            return status, body, headers

        return await _answer(
            request,
            lambda form: provider.server.create_endpoint_response("introspection", form),
            provider.machine_tokens.inspect,
            unless_revoked,
        )

    @post("/oauth2/revoke", opt=_OAUTH_OPT)
    async def revoke(self, request: Request[Any, Any, Any]) -> Response[Any]:
        provider: OpenIDProvider = request.app.state.oauth2
        return await _answer(
            request,
            lambda form: provider.server.create_endpoint_response("revocation", form),
            None,
        )


async def _answer(
    request: Request[Any, Any, Any],
    respond: Callable[[FormRequest], Answer],
    introspected: Callable[[str], dict[str, Any]] | None,
    settle: Callable[[Answer], Awaitable[Answer]] | None = None,
) -> Response[Any]:
    provider: OpenIDProvider = request.app.state.oauth2
    form = await _form(request)
    if isinstance(form, tuple):
        return _response(form)
    uri = provider.settings.public_url.rstrip("/") + request.url.path
    oauth_request = FormRequest(uri, request.headers, form, introspected)
    ip = provider.client_address.of(request).ip

    def attempted() -> Answer:
        # Only a failed authentication keeps the request it took from the allowance.
        with provider.throttle.failures_only(THROTTLE, ip) as attempt:
            answer = respond(oauth_request)
            attempt.failed = oauth_request.failed_authentication
        return answer

    # Authlib is synchronous, and authenticating a client may read the event store.
    answer = await asyncio.get_running_loop().run_in_executor(None, attempted)
    return _response(answer if settle is None else await settle(answer))


async def _form(request: Request[Any, Any, Any]) -> Form | Answer:
    """The form, or the invalid_request answer for a body that is not one, repeats a parameter
    (RFC 6749, 3.2) or authenticates twice (2.3)."""
    media_type, _ = request.content_type
    if media_type != _FORM:
        return _refused(f"Send the parameters as {_FORM}.")
    fields = list((await request.form()).multi_items())
    names = [name for name, _ in fields]
    repeated = sorted({n for n in names if names.count(n) > 1 and n != "resource"})
    if repeated:
        return _refused(f"Parameters given more than once: {', '.join(repeated)}.")
    if "authorization" in request.headers and "client_secret" in names:
        return _refused("Authenticate the client one way only.")
    return Form([(name, str(value)) for name, value in fields])


def _response(answer: Answer) -> Response[Any]:
    status, body, headers = answer
    return Response(body, status_code=status, headers=dict(headers), media_type="application/json")
