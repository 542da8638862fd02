"""The OpenID Provider's endpoints on Litestar: discovery, userinfo, and the token,
introspection and revocation endpoints, each handed whole to Authlib's authorization server
(interfaces/http/oauth2_server.py). This adapter only reads the form, guards the client
authentication with the throttle, and writes Authlib's answer back. The authorization endpoint
is a page (interfaces/pages/authorize.py): it needs the person's browser session."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749.util import extract_basic_authorization
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType

from application.clients.machine_tokens import ALGORITHM, MachineTokens
from application.clients.person_tokens import ACR_VALUES, CLAIMS_SUPPORTED, PersonTokens
from application.clients.registry import Clients, NotCached
from application.factors.throttle import Attempt, Throttle
from application.origin import current_client
from application.ports import ClaimSigner
from domain.errors import DomainError
from infrastructure.signing_keys import SigningKeys
from interfaces.container import Container
from interfaces.http.cors import for_client
from interfaces.http.oauth2_server import (
    AUTH_METHODS,
    CODE_CHALLENGE_METHODS,
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
    """OpenID Connect Discovery 1.0 metadata: what exists now, and nothing more. A person signs
    in on the pages, so without them only the machine grant is served and no sign-in or sign-out
    endpoint is named."""
    base = settings.public_url.rstrip("/")
    people = settings.pages_enabled
    endpoints = {
        "issuer": settings.issuer,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "token_endpoint": f"{base}/oauth2/token",
        "userinfo_endpoint": f"{base}/oauth2/userinfo",
        "introspection_endpoint": f"{base}/oauth2/introspect",
        "revocation_endpoint": f"{base}/oauth2/revoke",
    }
    if people:
        endpoints["authorization_endpoint"] = f"{base}/oauth2/authorize"
        endpoints["end_session_endpoint"] = f"{base}/oauth2/logout"
    return {
        **endpoints,
        "grant_types_supported": GRANT_TYPES if people else ["client_credentials"],
        "token_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": CODE_CHALLENGE_METHODS,
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_supported": CLAIMS_SUPPORTED,
        "acr_values_supported": ACR_VALUES,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(signer.algorithms),
        "access_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
    }


def _refused(description: str, status: int = 400) -> Answer:
    body = {**_ERROR_BODY, "error_description": description}
    return status, body, [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


@dataclass(frozen=True)
class ProviderEdge:
    """What every endpoint of the provider needs: Authlib's server, the throttle on client
    authentication, the use cases its answers read, and where the provider is. The hot
    endpoints read it from the app's state (`openid_provider`) rather than as a dependency
    beside another: two dependencies at one depth cost Litestar a task group per request, a
    sixth of an introspection's CPU in a profile (see interfaces/http/me.py)."""

    server: TesseraAuthorizationServer
    throttle: Throttle
    settings: Settings
    machine_tokens: MachineTokens
    person_tokens: PersonTokens
    client_address: ClientAddress

    async def answer(
        self,
        request: Request[Any, Any, Any],
        respond: Callable[[FormRequest], Answer],
        introspected: Callable[[str], dict[str, Any]] | None = None,
        settle: Callable[[Answer], Awaitable[Answer]] | None = None,
        read_only: bool = False,
    ) -> Response[Any]:
        """Reads the form, hands it to Authlib off the event loop (it is synchronous, and
        authenticating a client may read the event store), and writes its answer back, once
        `settle` (on the loop) has had its say. A `read_only` answer (it changes nothing) is
        first tried on the loop from this process's copy of its client, and handed to a
        thread only if it needs the event store: the thread and back cost introspection a
        fifth of its CPU."""
        form = await _form(request)
        if isinstance(form, tuple):
            return _response(form)
        # Who is asking, as the app's before_request hook attributed the request already.
        client = current_client.get() or self.client_address.of(request)
        uri = self.settings.public_url.rstrip("/") + request.url.path
        loop = asyncio.get_running_loop()

        def awaited(coroutine: Coroutine[Any, Any, Any]) -> Any:
            # An async use case (the revocation store, a chain's turn) on this request's loop.
            return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

        def made() -> FormRequest:
            return FormRequest(uri, request.headers, form, introspected, awaited, client)

        # Only a failed authentication keeps the request it took from the allowance; an
        # attempt this process's copy of the client vouches for cannot fail, and takes none.
        throttled: AbstractAsyncContextManager[Attempt] = (
            nullcontext(Attempt())
            if self.server.clients.vouches(*_credentials(request, form))
            else self.throttle.failures_only(THROTTLE, client.ip)
        )
        async with throttled as attempt:
            oauth_request = made()
            answer = _from_cache(respond, oauth_request) if read_only else None
            if answer is None:
                if read_only:
                    oauth_request = made()  # asked again from the start, where it may wait
                try:
                    answer = await loop.run_in_executor(None, respond, oauth_request)
                except asyncio.CancelledError:
                    # The thread goes on and may find a wrong secret no one is told of:
                    # the request it took stays taken.
                    attempt.failed = True
                    raise
            attempt.failed = oauth_request.failed_authentication
        authenticated = getattr(oauth_request, "client", None)
        if authenticated is not None:
            for_client(request, authenticated.view.client_id)
        return _response(answer if settle is None else await settle(answer))


def _credentials(request: Request[Any, Any, Any], form: Form) -> tuple[str, str | None]:
    """The client id and secret the request presents (client_secret_basic, else the form's
    client_secret_post or none), as Authlib reads them; ("", None) when it presents none."""
    if "authorization" in request.headers:
        client_id, secret = extract_basic_authorization(request.headers)
        return client_id or "", secret
    return form.data.get("client_id", ""), form.data.get("client_secret")


def _from_cache(respond: Callable[[FormRequest], Answer], request: FormRequest) -> Answer | None:
    """respond's answer from this process's copy of its clients; None if it needs the event
    store."""
    try:
        with Clients.cached_only():
            return respond(request)
    except NotCached:
        return None


def provider_edge(container: Container) -> ProviderEdge:
    server = TesseraAuthorizationServer(
        container.clients,
        container.machine_tokens,
        container.person_tokens,
        container.authorization_codes,
        container.sessions,
        container.settings.issuer,
    )
    return ProviderEdge(
        server,
        container.throttle,
        container.settings,
        container.machine_tokens,
        container.person_tokens,
        ClientAddress(container.settings.trusted_proxies),
    )


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
        provider: ProviderEdge = request.app.state.openid_provider
        return await provider.answer(request, provider.server.create_token_response)

    @post("/oauth2/introspect", opt=_OAUTH_OPT)
    async def introspect(self, request: Request[Any, Any, Any]) -> Response[Any]:
        provider: ProviderEdge = request.app.state.openid_provider

        async def unless_revoked(answer: Answer) -> Answer:
            # The revocation store is asked here, on the loop, once the thread has answered:
            # one hand-off between threads per request, not three.
            status, body, headers = answer
            if status == 200:
                body = await provider.machine_tokens.unless_revoked(body)
            return status, body, headers

        return await provider.answer(
            request,
            lambda form: provider.server.create_endpoint_response("introspection", form),
            provider.machine_tokens.inspect,
            unless_revoked,
            read_only=True,
        )

    @post("/oauth2/revoke", opt=_OAUTH_OPT)
    async def revoke(self, request: Request[Any, Any, Any]) -> Response[Any]:
        provider: ProviderEdge = request.app.state.openid_provider
        return await provider.answer(
            request, lambda form: provider.server.create_endpoint_response("revocation", form)
        )

    @get("/oauth2/userinfo", cache=False)
    async def userinfo(self, request: Request[Any, Any, Any]) -> Response[Any]:
        # From the app's state, as the other hot endpoints: no dependency to resolve.
        return await _userinfo(request, request.app.state.openid_provider, None)

    @post("/oauth2/userinfo", opt=_OAUTH_OPT, status_code=200)
    async def userinfo_posted(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """OIDC Core 5.3.1: POST too, the token in the header or (RFC 6750, 2.2) the form."""
        media_type, _ = request.content_type
        form = (await request.form()).multi_items() if media_type == _FORM else []
        tokens = [str(value) for name, value in form if name == "access_token"]
        return await _userinfo(request, request.app.state.openid_provider, tokens)


async def _userinfo(
    request: Request[Any, Any, Any], provider: ProviderEdge, posted: list[str] | None
) -> Response[Any]:
    """The person's claims for a Bearer token of ours meant for userinfo (RFC 6750 errors)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    presented = ([value.strip()] if header and scheme.lower() == "bearer" else []) + (posted or [])
    if (header and scheme.lower() != "bearer") or len(presented) > 1:
        return _bearer_refused(400, "invalid_request", "Send one Bearer access token.")
    if not presented:
        return _bearer_refused(401, None, None)
    try:
        client_id, claims = await provider.person_tokens.userinfo(presented[0])
    except DomainError:
        return _bearer_refused(401, "invalid_token", "The access token is invalid or expired.")
    for_client(request, client_id)
    return Response(claims, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _bearer_refused(status: int, error: str | None, description: str | None) -> Response[Any]:
    """RFC 6750, 3: a request without a token learns only that one is needed."""
    challenge = 'Bearer realm="tessera"'
    if error is not None:
        challenge += f', error="{error}", error_description="{description}"'
    body = {"error": error, "error_description": description} if error else {}
    return Response(
        body,
        status_code=status,
        headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
        media_type="application/json",
    )


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
